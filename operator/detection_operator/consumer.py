"""For detection services: read the profile the operator published, verify it, and reload on change.

Mount the policy's ConfigMap as a volume and point a :class:`ProfileReader` at the directory::

    reader = ProfileReader("/etc/detection", key=open("/etc/detection-key/hmac", "rb").read())
    profile = reader.load()
    reader.watch(lambda p: detector.apply(p), stop=shutdown_event)

Kubernetes updates ConfigMap volumes by swapping a symlink, so a read never sees half a file.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

from .api.contract import ProfileDocument
from .signing import verify

PROFILE = "profile.json"
SIGNATURE = "profile.json.sig"


class ProfileReader:
    """Loads ``profile.json`` from a mounted ConfigMap directory."""

    def __init__(self, directory: str | Path, key: bytes | None = None) -> None:
        self.directory = Path(directory)
        self.key = key
        self._last_digest: str | None = None

    def load(self) -> ProfileDocument:
        """Read, verify (when a key is set) and validate profile.json. Raises ValueError when it is not."""
        payload = (self.directory / PROFILE).read_bytes()
        if self.key is not None:
            signature_file = self.directory / SIGNATURE
            if not signature_file.exists():
                raise ValueError(f"{PROFILE} has no signature ({SIGNATURE} missing) but a key is configured")
            if not verify(self.key, payload, signature_file.read_text()):
                raise ValueError(f"{PROFILE} does not match its signature: refusing it")
        document = ProfileDocument.model_validate_json(payload)
        self._last_digest = hashlib.sha256(payload).hexdigest()
        return document

    def reload_if_changed(self) -> ProfileDocument | None:
        """The profile if its file changed since the last successful load, else None."""
        digest = hashlib.sha256((self.directory / PROFILE).read_bytes()).hexdigest()
        return None if digest == self._last_digest else self.load()

    def watch(
        self,
        on_change: Callable[[ProfileDocument], None],
        stop: threading.Event,
        interval: float = 2.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> threading.Thread:
        """Poll in a daemon thread and call ``on_change`` with each new valid profile until ``stop`` is set.

        A profile that fails verification is reported to ``on_error`` and not applied: the detector keeps
        the last good one.
        """

        def loop() -> None:
            while not stop.is_set():
                try:
                    changed = self.reload_if_changed()
                except (OSError, ValueError) as exc:
                    if on_error is not None:
                        on_error(exc)
                else:
                    if changed is not None:
                        on_change(changed)
                stop.wait(interval)

        thread = threading.Thread(target=loop, name="profile-watch", daemon=True)
        thread.start()
        return thread
