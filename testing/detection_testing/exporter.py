"""A small, controllable Prometheus exporter for tests and the demo.

Each :class:`MetricExporter` owns its own series table and HTTP server, so several can run in one
process without sharing state (unlike ``prometheus_client``'s global registry).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Literal

from .httpservice import HttpService, QuietHandler

__all__ = ["MetricExporter", "main", "parse_sample_line"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")

_Kind = Literal["gauge", "counter"]
_LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Family:
    kind: _Kind
    series: dict[_LabelKey, float] = field(default_factory=dict)


def _label_key(labels: Mapping[str, str] | None) -> _LabelKey:
    if not labels:
        return ()
    for name in labels:
        # Reserved "__" names would be dropped or rejected by Prometheus at scrape time, which
        # shows up in a test as a confusing "series never appears"; fail at the call site instead.
        if not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ValueError(f"invalid label name: {name!r}")
    return tuple(sorted(labels.items()))


def _check_name(name: str) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"invalid metric name: {name!r}")


def _escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    # Python's str() gives "nan"/"inf", which the Prometheus text parser rejects; it wants Go spellings.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _render(families: Mapping[str, _Family]) -> bytes:
    lines: list[str] = []
    for name in sorted(families):
        family = families[name]
        lines.append(f"# TYPE {name} {family.kind}")
        for key in sorted(family.series):
            value = _format_value(family.series[key])
            if key:
                body = ",".join(f'{k}="{_escape_label_value(v)}"' for k, v in key)
                lines.append(f"{name}{{{body}}} {value}")
            else:
                lines.append(f"{name} {value}")
    lines.append("")
    return "\n".join(lines).encode()


class MetricExporter(HttpService):
    """Serve a mutable set of gauges and counters on ``http://127.0.0.1:PORT/metrics``.

    ``port=0`` picks a free port on :meth:`start`; the chosen port is kept for later restarts so a
    Prometheus target pointing at it stays valid across ``stop()``/``start()`` (an "exporter down"
    test). All methods are thread safe.
    """

    def __init__(self, port: int = 0) -> None:
        """Create a stopped exporter; call :meth:`start` or use it as a context manager."""
        self._port = port
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    # -- series --------------------------------------------------------------------------------

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        """Set the gauge series ``name{labels}`` to ``value`` (NaN and +/-Inf allowed)."""
        _check_name(name)
        key = _label_key(labels)
        with self._lock:
            self._family(name, "gauge").series[key] = float(value)

    def inc(self, name: str, amount: float = 1.0, labels: Mapping[str, str] | None = None) -> None:
        """Add ``amount`` (>= 0) to the counter series ``name{labels}``, creating it at 0 first."""
        _check_name(name)
        if not amount >= 0:  # also rejects NaN
            raise ValueError(f"counter increment must be >= 0, got {amount!r}")
        key = _label_key(labels)
        with self._lock:
            series = self._family(name, "counter").series
            series[key] = series.get(key, 0.0) + float(amount)

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        """Drop one series so Prometheus marks it stale; return whether it existed."""
        key = _label_key(labels)
        with self._lock:
            family = self._families.get(name)
            if family is None or key not in family.series:
                return False
            del family.series[key]
            if not family.series:
                # A TYPE line with no samples is legal, but it would pin the kind of a name the
                # caller considers gone.
                del self._families[name]
            return True

    def clear(self) -> None:
        """Remove every series."""
        with self._lock:
            self._families.clear()

    def render(self) -> bytes:
        """Return the current text exposition, exactly as served on ``/metrics``."""
        with self._lock:
            return _render(self._families)

    # -- internals -----------------------------------------------------------------------------

    def _family(self, name: str, kind: _Kind) -> _Family:
        family = self._families.get(name)
        if family is None:
            family = self._families[name] = _Family(kind)
        elif family.kind != kind:
            raise ValueError(f"{name} is a {family.kind}, not a {kind}")
        return family

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """Serve the series on /metrics in the text format."""
        exporter = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render()
                self.send_response(200)
                self.send_header("Content-Type", _CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


_SAMPLE_LINE = re.compile(
    r"""
    (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    (?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?
    (?:\s+(?P<value>\S+))?
    """,
    re.VERBOSE,
)
_LABEL_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_sample_line(line: str) -> tuple[str, dict[str, str], float | None]:
    """Parse ``name{a="b"} value`` into ``(name, labels, value)``; value is None if omitted.

    Values use Python's ``float()`` spelling, which also accepts ``NaN``, ``+Inf`` and ``-Inf``.
    """
    match = _SAMPLE_LINE.fullmatch(line.strip())
    if match is None:
        raise ValueError(f"cannot parse sample line: {line!r}")
    labels: dict[str, str] = {}
    body = match["labels"] or ""
    pos = 0
    while pos < len(body.rstrip()):
        pair = _LABEL_PAIR.match(body, pos)
        if pair is None:
            raise ValueError(f"cannot parse labels: {{{body}}}")
        labels[pair[1]] = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m[0]], pair[2])
        pos = pair.end()
    value = None if match["value"] is None else float(match["value"])
    return match["name"], labels, value


def main(argv: Sequence[str] | None = None) -> int:
    """Run an exporter in the foreground, setting gauges from stdin lines.

    Each line is ``name{labels} value``; a line without a value removes that series, and blank
    lines and ``#`` comments are ignored. After stdin closes the exporter keeps serving until
    interrupted, so ``printf 'x 1\\n' | ...`` leaves ``x`` scrapeable.
    """
    parser = argparse.ArgumentParser(description="Serve gauges read from stdin on /metrics.")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    args = parser.parse_args(argv)

    with MetricExporter(port=args.port) as exporter:
        print(f"serving {exporter.url}/metrics", file=sys.stderr, flush=True)
        try:
            for line in sys.stdin:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                try:
                    name, labels, value = parse_sample_line(line)
                    if value is None:
                        exporter.remove(name, labels)
                    else:
                        exporter.set(name, value, labels)
                except ValueError as exc:
                    # A typo in an interactive demo should not take the exporter down.
                    print(f"error: {exc}", file=sys.stderr, flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
    return 0
