"""Alert delivery latency: from the decision handing its records to the deliverer, to a real webhook
receiver on loopback having them (signed, one grouped POST)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from detection_operator.core.identity import ObjectRef
from detection_operator.decide.alerts import Alert, plan_alerts
from detection_operator.notify.delivery import Deliverer
from detection_operator.notify.receivers import ReceiverConfig
from detection_operator.record.audit import Origin, alert_records
from detection_testing.receiver import WebhookReceiver

from .harness import Stats


def decision_to_webhook(samples: int = 100) -> Stats:
    """Median time from start() to the receiver recording the request."""

    async def run(receiver: WebhookReceiver) -> list[float]:
        config = ReceiverConfig.model_validate(
            {"receivers": [{"name": "hook", "type": "webhook", "url": receiver.url, "hmacKey": "bench"}]}
        )
        notifier = Deliverer.from_config(config)
        obj = ObjectRef("ModelRoute", "bench", "route")
        latencies = []
        for i in range(samples):
            alert = Alert("latency", "warning", f"m{i}/latencyP95Ms", "p95 high", value=3000, threshold=2000)
            now = datetime.now(UTC)
            plan = plan_alerts(obj, [alert], (), set(), timedelta(minutes=15), now)
            records = alert_records(Origin(obj, 1, "bench", now), plan, (), "15m")
            before = len(receiver.requests)
            start = time.time()
            notifier.start(obj, {"hook": records})
            await notifier.drain()
            latencies.append(receiver.requests[before].received_at - start)
        await notifier.close()
        return latencies

    with WebhookReceiver() as receiver:
        return Stats.of(asyncio.run(run(receiver)))
