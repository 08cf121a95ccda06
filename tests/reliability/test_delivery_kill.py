"""SIGKILL during a webhook retry: the notification is in the status outbox before its first try, so the
restarted operator delivers it once the receiver recovers, under the same record id (the receiver keeps one).

Each trial kills the operator at a different point of the retry: after the first failed try (mid-round),
after the second, and after the whole first round (the next round waits in status, backed off).
"""

from __future__ import annotations

from kubernetes import client

from detection_testing.delivery_trials import balanced_policy, kill_during_retry
from detection_testing.exporter import MetricExporter
from detection_testing.operator_process import OperatorProcess
from detection_testing.prometheus import PrometheusServer
from detection_testing.receiver import WebhookReceiver
from detection_testing.report import Report


def test_sigkill_during_a_webhook_retry_delivers_after_restart_once_per_id(
    kube: client.ApiClient,
    namespace: str,
    exporter: MetricExporter,
    prometheus: PrometheusServer,
    receiver: WebhookReceiver,
    operator: OperatorProcess,
    report: Report,
) -> None:
    labels = {"namespace": namespace}
    policy = balanced_policy(kube, namespace, exporter, prometheus)
    trials = [
        kill_during_retry(
            policy, operator, receiver, exporter, labels, to_lean=i % 2 == 0, tries_before_kill=k
        )
        for i, k in enumerate((1, 2, 3))
    ]
    for trial in trials:
        assert not trial.lost, trial
        assert not trial.duplicated, trial
        assert len(trial.delivered) == 1, trial
    outbox = policy.status()["outbox"]
    assert all(not p["ids"] for p in outbox.get("pending", [])), outbox["pending"]
    condition = policy.wait_condition("RecordsDelivered", "True", timeout=30)
    switches = [r for r in outbox["records"] if r["type"] == "profile-switch"]
    assert [r["to"] for r in switches][-3:] == ["lean", "balanced", "lean"]
    report.fault(
        "operator SIGKILLed during a webhook retry (receiver 503, then recovered)",
        "delivered after restart, once per record id after dedup; nothing left pending",
        f"{len(trials)} trials (killed after 1, 2, 3 failed tries): "
        f"{sum(len(t.delivered) for t in trials)} delivered, "
        f"{sum(t.redelivered for t in trials)} redelivered under the same id, 0 lost; "
        f"RecordsDelivered: {condition['reason']}",
    )
