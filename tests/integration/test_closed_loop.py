"""The closed-loop simulator against a real apiserver: the detector runs the profile.json it reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kubernetes import client

from detection_operator.api.contract import ProfileDocument
from detection_testing.detector import ProfiledDetector
from detection_testing.exporter import MetricExporter, parse_sample_line
from detection_testing.kube import wait_for
from detection_testing.simulator import ContributorLoad, DetectorLoad

CONFIG_MAP = "bot-detector-detection-profile"
COSTS = {
    "strict-rules": ContributorLoad(runtime_seconds=0.005, memory_bytes=20e6),
    "llm-judge": ContributorLoad(runtime_seconds=0.3, memory_bytes=900e6),
}


def _profile(namespace: str, name: str, contributors: list[str], revision: int) -> str:
    document = ProfileDocument.model_validate(
        {
            "policy": {"namespace": namespace, "name": "bot-detector"},
            "profile": name,
            "revision": revision,
            "decidedAt": datetime.now(UTC),
            "reason": "test",
            "contributors": contributors,
            "external": [],
            "expense": {},
            "reasons": [],
        }
    )
    return document.model_dump_json(by_alias=True)


def _series(exporter: MetricExporter) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One consistent reading of every series (one render, so sum and count come from the same tick)."""
    result = {}
    for line in exporter.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, labels, value = parse_sample_line(line)
            if value is not None:
                result[(name, tuple(sorted(labels.items())))] = value
    return result


def _latency_mark(exporter: MetricExporter, namespace: str) -> tuple[float, float]:
    series = _series(exporter)
    labels = (("namespace", namespace),)
    return (
        series.get(("detector_request_duration_seconds_sum", labels), 0.0),
        series.get(("detector_request_duration_seconds_count", labels), 0.0),
    )


def _mean_latency_since(exporter: MetricExporter, namespace: str, mark: tuple[float, float]) -> float | None:
    total, count = _latency_mark(exporter, namespace)
    return (total - mark[0]) / (count - mark[1]) if count > mark[1] else None


def test_detector_latency_and_cost_follow_the_profile_it_reads(
    kube: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(kube)

    def publish(data: dict[str, str]) -> None:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=CONFIG_MAP), data=data)
        try:
            core.replace_namespaced_config_map(CONFIG_MAP, namespace, body)
        except client.ApiException:
            core.create_namespaced_config_map(namespace, body)

    publish({"profile.json": _profile(namespace, "paranoid", ["strict-rules", "llm-judge"], 1)})
    with (
        MetricExporter() as exporter,
        ProfiledDetector(
            kube, namespace, CONFIG_MAP, exporter, base=DetectorLoad(latency_seconds=0.05), costs=COSTS
        ) as detector,
    ):
        wait_for(
            lambda: detector.profile and detector.profile.profile == "paranoid", timeout=20, what="paranoid"
        )
        memory = ("detector_contributor_memory_bytes", (("contributor", "llm-judge"),))
        wait_for(lambda: memory in _series(exporter), timeout=10, what="the judge's memory series")

        start = _latency_mark(exporter, namespace)
        paranoid = wait_for(
            lambda: _mean_latency_since(exporter, namespace, start), timeout=10, what="paranoid traffic"
        )
        assert paranoid == pytest.approx(0.05 + 0.005 + 0.3)

        # A document that does not validate is ignored: the detector keeps the last good profile.
        publish({"profile.json": json.dumps({"profile": "broken"})})
        wait_for(lambda: detector.rejected >= 1, timeout=20, what="the broken document seen")
        assert detector.profile is not None and detector.profile.profile == "paranoid"

        publish({"profile.json": _profile(namespace, "lean", ["strict-rules"], 2)})
        wait_for(lambda: detector.profile and detector.profile.profile == "lean", timeout=20, what="lean")
        start = _latency_mark(exporter, namespace)
        lean = wait_for(
            lambda: _mean_latency_since(exporter, namespace, start), timeout=10, what="lean traffic"
        )
        assert lean == pytest.approx(0.05 + 0.005)
        # The judge is no longer loaded: its memory series is gone, its call counter stops growing.
        assert memory not in _series(exporter)
