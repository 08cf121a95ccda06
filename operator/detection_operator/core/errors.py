"""Exceptions that cross layers: a replica that lost the Lease, an output that could not be written."""

from __future__ import annotations


class NotLeader(Exception):
    """An evaluation stopped before a write because this replica no longer holds the Lease of
    the object's bucket."""


class OutputError(Exception):
    """An output write that failed: an API error, or something the write needs that is missing."""

    def __init__(self, reason: str, status: int | None = None, what: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        """The HTTP status of the failed request, or the one the apiserver would give (404 for a missing
        Secret key)."""
        self.what = what
        """The output, e.g. ``ConfigMap bot-detection-profile``."""

    def about(self, what: str) -> OutputError:
        """The same error, naming the output it concerns."""
        return OutputError(self.reason, self.status, what)

    def __str__(self) -> str:
        cause = f"{self.status} {self.reason}" if self.status is not None else self.reason
        return f"writing {self.what}: {cause}" if self.what else cause
