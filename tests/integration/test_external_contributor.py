"""The external-contributor helper against a real HTTP service: within timeoutMs, neutral on failure,
signed verdicts verified with the referenced key, and the catalog's detector_external_* metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from detection_operator.api.contract import ExternalContributorEntry, SecretKeyRef
from detection_operator.client.external import UNAVAILABLE, ExternalContributor, keys_from_directory
from detection_operator.client.monitor import ExternalMetrics
from detection_testing.verdict_service import VerdictService

KEY = b"intel-verdict-key"


def entry(url: str, signed: bool = True, **changes: object) -> ExternalContributorEntry:
    fields: dict[str, object] = {
        "name": "intel",
        "enabled": True,
        "endpoint": url,
        "weight": 0.8,
        "timeout_ms": 300,
        "signals": ["ip", "asn"],
        "circuit": "closed",
        "verification_key_ref": SecretKeyRef(name="intel-key", key="hmac") if signed else None,
    }
    fields.update(changes)
    return ExternalContributorEntry.model_validate(fields)


@pytest.fixture
def service() -> Iterator[VerdictService]:
    with VerdictService(key=KEY) as running:
        yield running


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def calls(registry: CollectorRegistry, outcome: str) -> float:
    return (
        registry.get_sample_value("detector_external_calls_total", {"service": "intel", "outcome": outcome})
        or 0
    )


def test_a_signed_verdict_is_used_with_the_policys_weight_and_only_allowed_signals_are_sent(
    service: VerdictService, registry: CollectorRegistry
) -> None:
    intel = ExternalContributor(entry(service.url), key=KEY, metrics=ExternalMetrics(registry))
    contribution = intel.call({"ip": "203.0.113.7", "asn": "64500", "cookie": "secret"})
    assert contribution.available and contribution.score == 0.9 and contribution.verdict == "bot"
    assert contribution.weight == 0.8 and contribution.reason == "ok"
    assert service.received == [{"signals": {"ip": "203.0.113.7", "asn": "64500"}}]  # no cookie
    assert calls(registry, "ok") == 1
    assert registry.get_sample_value("detector_external_duration_seconds_count", {"service": "intel"}) == 1
    assert intel.record_outcome(contribution, 1.0) == pytest.approx(0.9)
    assert registry.get_sample_value(
        "detector_external_accuracy_ratio", {"service": "intel"}
    ) == pytest.approx(0.9)
    intel.close()


def test_a_slow_service_gives_a_neutral_contribution_within_its_timeout(
    service: VerdictService, registry: CollectorRegistry
) -> None:
    service.delay = 2.0
    intel = ExternalContributor(
        entry(service.url, timeout_ms=200), key=KEY, metrics=ExternalMetrics(registry)
    )
    started = time.monotonic()
    contribution = intel.call({"ip": "203.0.113.7"})
    elapsed = time.monotonic() - started
    assert not contribution.available and contribution.weight == 0 and contribution.score is None
    assert contribution.reason == f"{UNAVAILABLE}: no answer within 200 ms"
    assert elapsed < 1.0  # the budget, not the service's 2 s
    assert calls(registry, "timeout") == 1
    assert registry.get_sample_value("detector_external_errors_total", {"service": "intel"}) == 1
    assert intel.record_outcome(contribution, 1.0) is None  # nothing to score
    intel.close()


def test_a_forged_or_unsigned_verdict_is_refused(
    service: VerdictService, registry: CollectorRegistry
) -> None:
    intel = ExternalContributor(entry(service.url), key=KEY, metrics=ExternalMetrics(registry))
    service.sign_with = b"not-the-policys-key"
    forged = intel.call({"ip": "203.0.113.7"})
    assert not forged.available and "signature" in forged.reason and forged.reason.startswith(UNAVAILABLE)
    service.sign_with, service.key = None, None
    unsigned = intel.call({"ip": "203.0.113.7"})
    assert not unsigned.available and "no X-Signature-SHA256 header" in unsigned.reason
    assert calls(registry, "bad-signature") == 2
    intel.close()


def test_errors_and_a_dead_service_are_neutral_and_counted(
    service: VerdictService, registry: CollectorRegistry
) -> None:
    metrics = ExternalMetrics(registry)
    intel = ExternalContributor(entry(service.url), key=KEY, metrics=metrics)
    service.status = 500
    assert intel.call({}).reason == f"{UNAVAILABLE}: HTTP 500"
    service.status, service.key, service.body = 200, None, b'{"score": 7}'
    unsigned = ExternalContributor(
        entry(service.url, signed=False), metrics=ExternalMetrics(CollectorRegistry())
    )
    assert "score must be a number in [0, 1]" in unsigned.call({}).reason
    service.stop()  # nothing listens any more: a new connection is refused
    dead = ExternalContributor(entry(service.url), key=KEY, metrics=metrics)
    assert dead.call({}).reason.startswith(f"{UNAVAILABLE}: ConnectError")
    dead.close()
    assert calls(registry, "error") == 2
    intel.close()
    unsigned.close()


def test_a_disabled_service_is_not_called(service: VerdictService, registry: CollectorRegistry) -> None:
    intel = ExternalContributor(
        entry(service.url, enabled=False, circuit="open"), key=KEY, metrics=ExternalMetrics(registry)
    )
    assert intel.call({"ip": "x"}).reason == f"{UNAVAILABLE}: disabled by the policy (circuit open)"
    assert service.received == [] and calls(registry, "ok") == 0
    intel.close()


def test_configuration_errors_are_clear(tmp_path: Path, service: VerdictService) -> None:
    metrics = ExternalMetrics(CollectorRegistry())
    with pytest.raises(ValueError, match="Secret intel-key key hmac: pass that key's value"):
        ExternalContributor(entry(service.url), metrics=metrics)
    with pytest.raises(ValueError, match="not an http"):
        ExternalContributor(entry("file:///etc/passwd", signed=False), metrics=metrics)
    keys = keys_from_directory(tmp_path)
    with pytest.raises(ValueError, match="Secret intel-key key hmac is not mounted"):
        keys(SecretKeyRef(name="intel-key", key="hmac"))
    (tmp_path / "intel-key").mkdir()
    (tmp_path / "intel-key" / "hmac").write_bytes(KEY)
    assert keys(SecretKeyRef(name="intel-key", key="hmac")) == KEY and keys(None) is None
