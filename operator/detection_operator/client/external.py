"""Calling an external intelligence service as profile.json describes it, within its time budget.

A detector builds one :class:`ExternalContributor` per ``external`` entry of the profile it runs and calls
it per request. Whatever goes wrong (the service is slow, down, answers nonsense, or its verdict is not
signed with the key the policy references) the detector gets a **neutral** contribution, weight 0 and
reason "external service unavailable: ...", and goes on without it; every call is counted in the
catalog's ``detector_external_*`` metrics, which the policy's external queries read::

    metrics = ExternalMetrics()
    keys = keys_from_directory("/etc/detection-keys")      # Secrets mounted as <dir>/<secret>/<key>
    intel = ExternalContributor(entry, key=keys(entry.verification_key_ref), metrics=metrics)
    contribution = intel.call({"ip": "203.0.113.7", "asn": "64500", "cookie": "..."})  # cookie is not sent
    ...
    intel.record_outcome(contribution, actual=1.0)  # the request turned out to be a bot

The service receives ``POST <endpoint>`` with ``{"signals": {...}}`` (only the signals the policy lets it
see) and answers 200 with ``{"score": <bot likelihood 0-1>, "verdict": "<optional label>"}``. A signed
verdict carries ``X-Signature-SHA256: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`` (the
operator's webhook scheme, :func:`~detection_operator.core.signing.sign_webhook`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..api.contract import ExternalContributorEntry, SecretKeyRef
from ..core.signing import WEBHOOK_HEADER, SignatureError, verify_webhook
from .monitor import ExternalMetrics, ExternalOutcome

__all__ = ["UNAVAILABLE", "Contribution", "ExternalContributor", "keys_from_directory"]

UNAVAILABLE = "external service unavailable"
"""The reason of every neutral contribution (followed by what went wrong)."""


@dataclass(frozen=True)
class Contribution:
    """What one external service contributes to one request's verdict.

    ``weight`` is the profile's trust weight when the service answered usably, else 0 (neutral).
    """

    service: str
    available: bool
    score: float | None
    verdict: str | None
    weight: float
    reason: str

    @classmethod
    def neutral(cls, service: str, why: str) -> Contribution:
        """A contribution that changes nothing: weight 0, no score."""
        return cls(service, False, None, None, 0.0, f"{UNAVAILABLE}: {why}")


class _Refused(Exception):
    def __init__(self, outcome: ExternalOutcome, why: str) -> None:
        super().__init__(why)
        self.outcome = outcome


def _checked_endpoint(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"external endpoint {endpoint!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError(f"external endpoint {parts.hostname}: credentials in the URL are refused")
    return endpoint


class ExternalContributor:
    """Calls one external service of a profile within ``timeout_ms`` and verifies its signed verdicts.

    ``key`` is the value of the Secret key the entry's ``verificationKeyRef`` names; it is required when
    the entry has one (an unsigned or wrongly signed verdict is then refused). ``tolerance`` is how old
    (seconds) a signed verdict may be.
    """

    def __init__(
        self,
        entry: ExternalContributorEntry,
        *,
        metrics: ExternalMetrics,
        key: bytes | None = None,
        http: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        tolerance: float = 300.0,
    ) -> None:
        """Check the entry (an http(s) endpoint; a key when it references one) and prepare the client."""
        self.entry = entry
        self.endpoint = _checked_endpoint(entry.endpoint)
        if entry.verification_key_ref is not None and not key:
            ref = entry.verification_key_ref
            raise ValueError(
                f"external service {entry.name} verifies verdicts with Secret {ref.name} key {ref.key}: "
                "pass that key's value as key="
            )
        self.key = key
        self.metrics = metrics
        self.clock, self.tolerance = clock, tolerance
        self._own_http = http is None
        self.http = http or httpx.Client(follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP client if this contributor made it."""
        if self._own_http:
            self.http.close()

    @property
    def timeout_seconds(self) -> float:
        """The entry's ``timeoutMs`` in seconds."""
        return self.entry.timeout_ms / 1000

    def call(self, signals: Mapping[str, Any]) -> Contribution:
        """Ask the service about one request. Never raises for the service's failures: they give a
        neutral contribution (and a counted outcome: timeout, error or bad-signature)."""
        name = self.entry.name
        if not self.entry.enabled:
            return Contribution.neutral(name, f"disabled by the policy (circuit {self.entry.circuit})")
        allowed = {k: v for k, v in signals.items() if k in self.entry.signals}
        started = time.monotonic()
        try:
            score, verdict = self._ask(allowed, started + self.timeout_seconds)
        except _Refused as refused:
            self.metrics.record_call(name, refused.outcome, time.monotonic() - started)
            return Contribution.neutral(name, str(refused))
        self.metrics.record_call(name, "ok", time.monotonic() - started)
        return Contribution(name, True, score, verdict, self.entry.weight, "ok")

    def _ask(self, signals: Mapping[str, Any], deadline: float) -> tuple[float, str | None]:
        budget = httpx.Timeout(self.timeout_seconds)
        try:
            with self.http.stream(
                "POST", self.endpoint, json={"signals": signals}, timeout=budget
            ) as response:
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("the answer took longer than timeoutMs")
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer took longer than timeoutMs")
        except httpx.TimeoutException as exc:
            raise _Refused("timeout", f"no answer within {self.entry.timeout_ms} ms") from exc
        except httpx.HTTPError as exc:
            raise _Refused("error", f"{type(exc).__name__}: {exc}") from exc
        if response.status_code != 200:
            raise _Refused("error", f"HTTP {response.status_code}")
        if self.key is not None:
            header = response.headers.get(WEBHOOK_HEADER)
            if header is None:
                raise _Refused("bad-signature", f"the verdict has no {WEBHOOK_HEADER} header")
            try:
                verify_webhook(self.key, body, header, self.clock(), self.tolerance)
            except SignatureError as exc:
                raise _Refused("bad-signature", f"the verdict's signature is refused: {exc}") from exc
        return _verdict(body)

    def record_outcome(self, contribution: Contribution, actual: Any) -> float | None:
        """Score a contribution against the request's real outcome (1.0 bot, 0.0 human, or the label
        the service's verdicts use) into the service's accuracy gauge; None for a neutral one."""
        if not contribution.available:
            return None
        predicted = contribution.verdict if isinstance(actual, str) else contribution.score
        return self.metrics.record_accuracy(contribution.service, predicted, actual)


def _verdict(body: bytes) -> tuple[float, str | None]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise _Refused("error", "the verdict is not JSON") from exc
    if not isinstance(document, dict):
        raise _Refused("error", "the verdict is not a JSON object")
    score, verdict = document.get("score"), document.get("verdict")
    # `not 0 <= score <= 1` also refuses NaN.
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        raise _Refused("error", f"the verdict's score must be a number in [0, 1], not {score!r}")
    if verdict is not None and not isinstance(verdict, str):
        raise _Refused("error", "the verdict's label must be a string")
    return float(score), verdict


def keys_from_directory(root: str | Path) -> Callable[[SecretKeyRef | None], bytes | None]:
    """Resolve a ``verificationKeyRef`` to the key's bytes from Secrets mounted under ``root`` as
    ``<root>/<secret name>/<key>``; None for no reference. Raises ValueError naming a missing file."""
    base = Path(root)

    def resolve(ref: SecretKeyRef | None) -> bytes | None:
        if ref is None:
            return None
        path = base / ref.name / ref.key
        try:
            return path.read_bytes()
        except OSError as exc:
            raise ValueError(f"Secret {ref.name} key {ref.key} is not mounted at {path}: {exc}") from exc

    return resolve
