"""Operator settings from the environment."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

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
    assert Settings.from_env({}).prometheus.batch_size == 32
    assert Settings.from_env({"DETECTION_OPERATOR_QUERY_BATCH": "1"}).prometheus.batch_size == 1


def test_no_history_store_without_a_host() -> None:
    assert Settings.from_env({}).history_store is None


def test_history_store_settings_with_the_password_from_a_file_and_never_in_repr(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("s3cret-value\n")
    settings = Settings.from_env(
        {
            "DETECTION_OPERATOR_HISTORY_POSTGRES_HOST": "pg.db.svc",
            "DETECTION_OPERATOR_HISTORY_POSTGRES_PORT": "6432",
            "DETECTION_OPERATOR_HISTORY_POSTGRES_USER": "auditor",
            "DETECTION_OPERATOR_HISTORY_POSTGRES_PASSWORD_FILE": str(tmp_path / "password"),
            "DETECTION_OPERATOR_HISTORY_RETENTION": "30d",
            "DETECTION_OPERATOR_HISTORY_SNAPSHOT_INTERVAL": "0",
        }
    )
    store = settings.history_store
    assert store is not None
    assert (store.host, store.port, store.database, store.user) == ("pg.db.svc", 6432, "detection", "auditor")
    assert store.password == "s3cret-value" and "s3cret-value" not in repr(settings)
    assert store.retention == timedelta(days=30) and store.snapshot_interval == timedelta(0)
    assert "password=s3cret-value" in store.conninfo() and store.target == "auditor@pg.db.svc:6432/detection"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DETECTION_OPERATOR_HISTORY_RETENTION": "90 days"}, "HISTORY_RETENTION: invalid age '90 days'"),
        ({"DETECTION_OPERATOR_HISTORY_POSTGRES_PASSWORD_FILE": "/nonexistent"}, "no file at /nonexistent"),
    ],
)
def test_history_store_settings_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Settings.from_env({"DETECTION_OPERATOR_HISTORY_POSTGRES_HOST": "pg", **env})
