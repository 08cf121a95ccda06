"""kopf's per-event success line for the watch handlers is dropped; everything else kopf logs stays."""

from __future__ import annotations

import logging

import pytest

from detection_operator.runtime.handlers import QuietWatchHandlers


def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


@pytest.mark.parametrize("handler", ["track", "restore-output"])
def test_the_success_line_of_a_watch_handler_is_dropped(handler: str) -> None:
    assert not QuietWatchHandlers().filter(_record(logging.INFO, f"Handler {handler!r} succeeded."))


@pytest.mark.parametrize(
    ("level", "message"),
    [
        (logging.ERROR, "Handler 'track' failed with an exception. Will ignore."),
        (logging.WARNING, "Handler 'track' succeeded."),
        (logging.INFO, "Handler 'start' succeeded."),
        (logging.INFO, "Handler 'track' succeeded. "),
    ],
)
def test_other_lines_are_kept(level: int, message: str) -> None:
    assert QuietWatchHandlers().filter(_record(level, message))
