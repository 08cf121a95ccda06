"""A standalone model server: answers inference requests and reports only what it served.

Standard library only (it runs in a bare ``python3`` image as a Pod, or as a local process)::

    python3 model_server.py --port 8080 --model neuroweaver-v3 [--namespace NS] [--latency-ms 20]
        [--accuracy 0.95] [--error-share 0] [--cost 0.002] [--tokens 300] [--memory-mb 400]

Endpoints:

- ``POST /infer`` (any body): one inference. 200 with ``{"model", "correct", "latencyMs"}``, or 503 when
  the server is set to fail (``errorShare``). Latency is really spent (the handler sleeps) and measured.
- ``GET /metrics``: Prometheus text. Every series describes served requests only, so before the first
  request there is none, and a killed process takes its series with it (Prometheus marks them stale):
  ``neuroweaver_requests_total{outcome="success"|"error"}``, ``neuroweaver_request_duration_seconds``
  (histogram), ``neuroweaver_accuracy_ratio`` (gauge over the last 100 successful answers),
  ``neuroweaver_correct_total``, ``neuroweaver_cost_total``, ``neuroweaver_tokens_total`` and
  ``neuroweaver_memory_bytes``; every series carries ``model`` (and ``namespace`` when given).
- ``GET /control`` / ``POST /control`` with a JSON object of any of ``latencyMs``, ``accuracy``,
  ``errorShare``, ``costPerRequest``, ``tokensPerRequest``, ``memoryMb``, ``ready``: read or change how
  it behaves from now on (a failing model answers with errors; a slow one sleeps longer).
- ``GET /healthz``: 200 while ``ready`` (a readiness probe), else 503.

Errors and correct answers are spread evenly (a running remainder, not random draws), so a share of
0.1 means exactly one request in ten and tests get the rates they set.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: Histogram bounds in seconds (``le``).
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCURACY_WINDOW = 100
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_SETTINGS = {
    "latencyMs": float,
    "accuracy": float,
    "errorShare": float,
    "costPerRequest": float,
    "tokensPerRequest": float,
    "memoryMb": float,
    "ready": bool,
}


class Spread:
    """Turns a share into an even sequence of yes/no: share 0.25 says yes on every fourth call."""

    def __init__(self, start: float = 0.0) -> None:
        self.remainder = start

    def take(self, share: float) -> bool:
        """Whether this call is one of the ``share`` that say yes."""
        self.remainder += min(1.0, max(0.0, share))
        if self.remainder >= 1.0 - 1e-9:
            self.remainder -= 1.0
            return True
        return False


class Model:
    """The behaviour (settings) and the served-request counters of one model; thread safe."""

    def __init__(self, name: str, labels: dict[str, str], settings: dict[str, Any]) -> None:
        self.name = name
        self.labels = labels
        self.settings = dict(settings)
        self.lock = threading.Lock()
        self.outcomes = {"success": 0, "error": 0}
        self.buckets = [0] * len(BUCKETS)
        self.duration_sum = 0.0
        self.correct = 0
        self.recent: deque[bool] = deque(maxlen=ACCURACY_WINDOW)
        self.cost = 0.0
        self.tokens = 0.0
        self.errors = Spread()
        # Half a step ahead: the first answer of a 95 %-accurate model is right, not wrong.
        self.hits = Spread(0.5)

    def control(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply ``changes`` (validated against the known settings) and return every setting."""
        unknown = sorted(set(changes) - set(_SETTINGS))
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(_SETTINGS)}")
        with self.lock:
            for key, value in changes.items():
                kind = _SETTINGS[key]
                if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ValueError(f"{key} must be a number")
                if kind is bool and not isinstance(value, bool):
                    raise ValueError(f"{key} must be true or false")
                self.settings[key] = kind(value)
            return dict(self.settings)

    def plan(self) -> tuple[float, bool, bool]:
        """(latency in seconds, fails, correct) of the next request."""
        with self.lock:
            fails = self.errors.take(self.settings["errorShare"])
            correct = not fails and self.hits.take(self.settings["accuracy"])
            return max(0.0, self.settings["latencyMs"]) / 1000, fails, correct

    def record(self, seconds: float, fails: bool, correct: bool) -> None:
        """Count one served request."""
        with self.lock:
            self.outcomes["error" if fails else "success"] += 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.duration_sum += seconds
            if not fails:
                self.correct += int(correct)
                self.recent.append(correct)
                self.cost += self.settings["costPerRequest"]
                self.tokens += self.settings["tokensPerRequest"]

    def exposition(self) -> bytes:
        """The Prometheus text of what was served; empty before the first request."""
        with self.lock:
            served = sum(self.outcomes.values())
            if served == 0:
                return b""
            lines: list[str] = []

            def family(name: str, kind: str, samples: list[tuple[dict[str, str], float]]) -> None:
                lines.append(f"# TYPE {name} {kind}")
                for extra, value in samples:
                    lines.append(f"{name}{_labels({**self.labels, **extra})} {_number(value)}")

            family(
                "neuroweaver_requests_total",
                "counter",
                [({"outcome": outcome}, count) for outcome, count in self.outcomes.items()],
            )
            histogram = "neuroweaver_request_duration_seconds"
            lines.append(f"# TYPE {histogram} histogram")
            bounds = [*(repr(b) for b in BUCKETS), "+Inf"]
            for bound, count in zip(bounds, [*self.buckets, served], strict=True):
                lines.append(f"{histogram}_bucket{_labels({**self.labels, 'le': bound})} {count}")
            lines.append(f"{histogram}_sum{_labels(self.labels)} {self.duration_sum!r}")
            lines.append(f"{histogram}_count{_labels(self.labels)} {served}")
            if self.recent:
                family("neuroweaver_accuracy_ratio", "gauge", [({}, sum(self.recent) / len(self.recent))])
                family("neuroweaver_correct_total", "counter", [({}, self.correct)])
                family("neuroweaver_cost_total", "counter", [({}, self.cost)])
                family("neuroweaver_tokens_total", "counter", [({}, self.tokens)])
            family("neuroweaver_memory_bytes", "gauge", [({}, self.settings["memoryMb"] * 1e6)])
            lines.append("")
            return "\n".join(lines).encode()


def _labels(labels: dict[str, str]) -> str:
    escaped = (
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)).replace(chr(10), "")}"'
        for k, v in sorted(labels.items())
    )
    return "{" + ",".join(escaped) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def handler(model: Model) -> type[BaseHTTPRequestHandler]:
    """The HTTP handler serving ``model``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: a load of requests would flood the Pod log."""

        def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: object) -> None:
            self._reply(status, json.dumps(document).encode() + b"\n")

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length > 0 else b""

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, model.exposition(), CONTENT_TYPE)
            elif path == "/control":
                self._json(200, model.control({}))
            elif path == "/healthz":
                ready = model.control({})["ready"]
                self._json(200 if ready else 503, {"ready": ready})
            else:
                self._json(404, {"error": f"no such path {path}"})

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            body = self._body()
            if path == "/infer":
                started = time.monotonic()
                latency, fails, correct = model.plan()
                time.sleep(latency)
                elapsed = time.monotonic() - started
                model.record(elapsed, fails, correct)
                if fails:
                    self._json(503, {"model": model.name, "error": "model failure (errorShare)"})
                else:
                    self._json(200, {"model": model.name, "correct": correct, "latencyMs": elapsed * 1000})
            elif path == "/control":
                try:
                    changes = json.loads(body or b"{}")
                    if not isinstance(changes, dict):
                        raise ValueError("the body must be a JSON object")
                    self._json(200, model.control(changes))
                except ValueError as exc:
                    self._json(400, {"error": str(exc)})
            else:
                self._json(404, {"error": f"no such path {path}"})

    return Handler


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one model until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="A simulated model server that reports what it served.")
    parser.add_argument("--port", type=int, required=True, help="TCP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a Pod)")
    parser.add_argument("--model", required=True, help="model name, the `model` label of every series")
    parser.add_argument("--namespace", help="adds a `namespace` label to every series")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="time spent per request")
    parser.add_argument("--accuracy", type=_share, default=0.95, help="share of correct answers")
    parser.add_argument("--error-share", type=_share, default=0.0, help="share of requests that fail")
    parser.add_argument("--cost", type=float, default=0.002, help="cost per successful request")
    parser.add_argument("--tokens", type=float, default=300.0, help="tokens per successful request")
    parser.add_argument("--memory-mb", type=float, default=400.0, help="reported memory use")
    args = parser.parse_args(argv)
    labels = {"model": args.model, **({"namespace": args.namespace} if args.namespace else {})}
    model = Model(
        args.model,
        labels,
        {
            "latencyMs": args.latency_ms,
            "accuracy": args.accuracy,
            "errorShare": args.error_share,
            "costPerRequest": args.cost,
            "tokensPerRequest": args.tokens,
            "memoryMb": args.memory_mb,
            "ready": True,
        },
    )
    server = ThreadingHTTPServer((args.host, args.port), handler(model))
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # The chosen port on one line, so a parent that passed --port 0 can read where it listens.
    host, port = server.server_address[:2]
    print(f"listening {host!s}:{port}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
