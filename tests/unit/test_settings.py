"""Operator settings from the environment."""

from __future__ import annotations

from pathlib import Path

from detection_operator.runtime.settings import Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.namespaces == () and settings.prometheus.timeout_seconds == 5


def test_prometheus_settings_and_credentials_from_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("abc\n")
    settings = Settings.from_env(
        {
            "DETECTION_OPERATOR_NAMESPACES": "a, b,",
            "DETECTION_OPERATOR_PROMETHEUS_URL": "https://thanos:9090",
            "DETECTION_OPERATOR_PROMETHEUS_TIMEOUT_SECONDS": "2.5",
            "DETECTION_OPERATOR_PROMETHEUS_BEARER_TOKEN_FILE": str(tmp_path / "token"),
            "DETECTION_OPERATOR_PROMETHEUS_CA_FILE": str(tmp_path / "absent.crt"),
            "DETECTION_OPERATOR_PROMETHEUS_HEADERS": '{"X-Scope-OrgID": "t"}',
        }
    )
    assert settings.namespaces == ("a", "b")
    config = settings.prometheus
    assert (config.url, config.timeout_seconds, config.bearer_token) == ("https://thanos:9090", 2.5, "abc")
    assert config.ca_file is None and config.headers == {"X-Scope-OrgID": "t"}
    assert "abc" not in repr(config)


def test_scale_settings() -> None:
    assert Settings.from_env({}).query_coalesce_seconds == 1.0
    assert Settings.from_env({}).status_refresh_seconds == 0.0
    tuned = Settings.from_env(
        {"DETECTION_OPERATOR_QUERY_COALESCE_SECONDS": "0", "DETECTION_OPERATOR_STATUS_REFRESH_SECONDS": "60"}
    )
    assert (tuned.query_coalesce_seconds, tuned.status_refresh_seconds) == (0.0, 60.0)
    assert Settings.from_env({}).scrape_alignment
    assert not Settings.from_env({"DETECTION_OPERATOR_SCRAPE_ALIGNMENT": "false"}).scrape_alignment
