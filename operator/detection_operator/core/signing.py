"""HMAC-SHA256 signatures of published documents, so a data plane can tell them from a hand edit."""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "sha256="


def sign(key: bytes, payload: bytes) -> str:
    """Signature of ``payload`` as ``sha256=<hex>``."""
    return PREFIX + hmac.new(key, payload, hashlib.sha256).hexdigest()


def verify(key: bytes, payload: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``payload``'s, compared in constant time."""
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, not "no match").
    return hmac.compare_digest(sign(key, payload).encode(), signature.strip().encode())


def digest(payload: bytes) -> str:
    """Content digest (not a signature) used for change detection and the config-checksum annotation."""
    return hashlib.sha256(payload).hexdigest()


WEBHOOK_HEADER = "X-Signature-SHA256"
DEFAULT_TOLERANCE = 300.0


def sign_webhook(key: bytes, body: bytes, timestamp: int) -> str:
    """``X-Signature-SHA256`` value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``.

    Signing the timestamp with the body lets a receiver reject old requests replayed later.
    """
    mac = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class SignatureError(ValueError):
    """A webhook that must not be trusted: bad signature, too old, or seen before."""


def verify_webhook(
    key: bytes, body: bytes, header: str, now: float, tolerance: float = DEFAULT_TOLERANCE
) -> int:
    """Check a webhook's signature and age (receiver side); return its timestamp or raise SignatureError."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        mac = parts["v1"]
    except (KeyError, ValueError) as exc:
        raise SignatureError(f"malformed {WEBHOOK_HEADER} header") from exc
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"timestamp {timestamp} is outside the {tolerance:g}s tolerance")
    expected, given = sign_webhook(key, body, timestamp).encode(), f"t={timestamp},v1={mac}".encode()
    if not hmac.compare_digest(expected, given):
        raise SignatureError("signature does not match the body")
    return timestamp


class ReplayGuard:
    """Receiver-side memory of signatures seen within the tolerance, so a captured request is used once."""

    def __init__(self, tolerance: float = DEFAULT_TOLERANCE) -> None:
        self.tolerance = tolerance
        self._seen: dict[str, int] = {}

    def verify(self, key: bytes, body: bytes, header: str, now: float) -> int:
        """verify_webhook, plus: the same signed request is accepted only once."""
        timestamp = verify_webhook(key, body, header, now, self.tolerance)
        self._seen = {h: t for h, t in self._seen.items() if now - t <= self.tolerance}
        if header in self._seen:
            raise SignatureError("replayed request: this signature was already accepted")
        self._seen[header] = timestamp
        return timestamp
