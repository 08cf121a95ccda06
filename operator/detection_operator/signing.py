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
    return hmac.compare_digest(sign(key, payload), signature.strip())


def digest(payload: bytes) -> str:
    """Content digest (not a signature) used for change detection and the config-checksum annotation."""
    return hashlib.sha256(payload).hexdigest()
