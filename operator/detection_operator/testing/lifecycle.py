"""`with` support for everything the tests start: the block starts it, leaving the block stops it."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Started:
    """Mixin for a part with ``start()`` and ``stop()``: ``with part:`` starts it and always stops it."""

    def start(self) -> None:
        """Start the part; subclasses implement it (with optional arguments of their own)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the part; subclasses implement it (with optional arguments of their own)."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
