"""A closed-loop bot detector: it runs the profile the operator published, and its metrics follow it.

The detector reads ``profile.json`` from the DetectionPolicy's ConfigMap through the Kubernetes API and
serves its traffic with exactly the contributors that profile names. Its p95 latency is the base latency
plus the runtime of each contributor it runs, its CPU grows with that work, and only the contributors
(and external services) it runs report calls, runtime and memory. So a switch to ``lean`` really lowers
the latency a high-latency rule reads, and a paranoid profile really costs more: a policy's rules see the
effect of its own decisions.

What the world sends (request rate, bot share) is the caller's: :meth:`ProfiledDetector.world`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

from kubernetes import client
from pydantic import ValidationError

from detection_operator.api.contract import ProfileDocument

from .configmap_watch import ConfigMapWatch
from .exporter import MetricExporter
from .lifecycle import Started
from .simulator import ContributorLoad, DetectorLoad, ExternalLoad, MetricSimulator, Traffic

__all__ = ["ProfiledDetector", "profile_traffic"]

#: CPU cores one second of contributor runtime per second costs (the rest of a request is I/O wait).
CPU_PER_RUNTIME = 1.0


def profile_traffic(
    namespace: str,
    base: DetectorLoad,
    costs: Mapping[str, ContributorLoad],
    externals: Mapping[str, ExternalLoad],
    contributors: Sequence[str],
    enabled_externals: Sequence[str],
) -> Traffic:
    """What a detector serving ``base`` traffic emits while running ``contributors`` (pure).

    Latency: base + the runtime of every contributor run (contributors run one after another), times
    ``base.contention`` (a saturated detector queues each piece of work). CPU: base + the contributors'
    runtime times the request rate (queueing costs time, not CPU). A contributor with no cost entry costs
    nothing but still reports its calls.
    """
    running = {
        name: costs.get(name, ContributorLoad(runtime_seconds=0.0, memory_bytes=0.0)) for name in contributors
    }
    runtime = sum(c.runtime_seconds for c in running.values())
    detector = replace(
        base,
        latency_seconds=base.latency_seconds + runtime * base.contention,
        cpu_cores=base.cpu_cores + CPU_PER_RUNTIME * runtime * base.requests_per_second,
    )
    return Traffic(
        namespace=namespace,
        detector=detector,
        contributors=running,
        externals={name: externals[name] for name in enabled_externals if name in externals},
    )


class ProfiledDetector(Started):
    """Follow a DetectionPolicy's ``profile.json`` and serve traffic with the profile it names.

    Until the first valid profile arrives it runs ``startup`` (a detector's built-in default). A
    document that does not validate is ignored: the detector keeps the last good profile, as the
    shipped :class:`~detection_operator.client.readers.ProfileReader` does.
    """

    def __init__(
        self,
        kube: client.ApiClient,
        namespace: str,
        config_map: str,
        exporter: MetricExporter,
        *,
        base: DetectorLoad | None = None,
        costs: Mapping[str, ContributorLoad] | None = None,
        externals: Mapping[str, ExternalLoad] | None = None,
        startup: Sequence[str] = (),
        tick_seconds: float = 0.25,
    ) -> None:
        """Prepare a stopped detector; ``costs`` gives each contributor's runtime and memory per call."""
        self.namespace = namespace
        self.costs = dict(costs or {})
        self.externals = dict(externals or {})
        self._lock = threading.Lock()
        self._base = base or DetectorLoad()
        self._contributors: tuple[str, ...] = tuple(startup)
        self._enabled: tuple[str, ...] = ()
        self._profile: ProfileDocument | None = None
        self.rejected = 0
        self.simulator = MetricSimulator(exporter, self._traffic(), tick_seconds)
        self._watch = ConfigMapWatch(kube, namespace, config_map, self._on_data)

    @property
    def profile(self) -> ProfileDocument | None:
        """The profile being run (None until the first valid one)."""
        with self._lock:
            return self._profile

    def world(self, base: DetectorLoad) -> None:
        """What the world sends from now on: request rate, bot share, the base latency and CPU."""
        with self._lock:
            self._base = base
        self.simulator.play(self._traffic())

    def start(self) -> None:
        """Start serving and following the ConfigMap."""
        self.simulator.start()
        self._watch.start()

    def stop(self) -> None:
        """Stop following and serving."""
        self._watch.stop()
        self.simulator.stop()

    def _traffic(self) -> Traffic:
        with self._lock:
            return profile_traffic(
                self.namespace, self._base, self.costs, self.externals, self._contributors, self._enabled
            )

    def _on_data(self, data: Mapping[str, str] | None) -> None:
        payload = (data or {}).get("profile.json")
        if payload is None:
            return  # deleted or not written yet: keep running what we run
        try:
            document = ProfileDocument.model_validate_json(payload)
        except ValidationError:
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            dropped = set(self._contributors) - set(document.contributors)
            self._profile = document
            self._contributors = tuple(document.contributors)
            self._enabled = tuple(e.name for e in document.external if e.enabled)
        self.simulator.play(self._traffic())
        for name in dropped:
            # A contributor that is not loaded holds no memory: its gauge goes, its counters stop.
            self.simulator.exporter.remove("detector_contributor_memory_bytes", {"contributor": name})
