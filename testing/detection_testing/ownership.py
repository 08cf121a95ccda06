"""Double evaluations, read from the JSON logs of several operator replicas.

Each replica logs when it acquires, releases or loses a bucket, and one line per status write (debug level,
so the processes run with --verbose) with the time the write was sent, before its ownership check. A
replica's *tenure* of a bucket runs from acquiring it to its last write before it released or lost it. A
hand-over puts the old tenure's last write before the new tenure's acquisition; a write of a bucket's object
inside another replica's tenure of that bucket, or by a replica that did not hold the bucket at all, is a
double evaluation. All replicas run on one host, so their log timestamps share one clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from detection_operator.runtime.buckets import bucket_of


@dataclass
class Tenure:
    """One replica's holding of one bucket, as its log shows it."""

    replica: str
    bucket: int
    acquired: float
    closed: float = float("inf")
    """When the replica released it or noticed it had lost it."""
    writes: list[float] = field(default_factory=list)

    def covers(self, at: float) -> bool:
        """Whether ``at`` lies between acquiring the bucket and the last write made holding it."""
        return bool(self.writes) and self.acquired <= at <= self.writes[-1]


@dataclass
class Write:
    """One status write."""

    replica: str
    namespace: str
    name: str
    at: float


@dataclass
class Ownership:
    """Tenures, writes, and what is wrong with them."""

    buckets: int
    tenures: list[Tenure] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    outside: list[Write] = field(default_factory=list)
    """Writes by a replica that, by its own log, did not hold the object's bucket."""

    def doubles(self) -> list[tuple[Write, Tenure]]:
        """Writes made inside another replica's tenure of the same bucket."""
        found = []
        for write in self.writes:
            bucket = bucket_of(write.namespace, self.buckets)
            for tenure in self.tenures:
                if tenure.bucket == bucket and tenure.replica != write.replica and tenure.covers(write.at):
                    found.append((write, tenure))
        return found

    def double_evaluations(self) -> int:
        """Doubles plus writes outside any tenure: 0 when no object ever had two writers at once."""
        return len(self.doubles()) + len(self.outside)

    def writers(self, namespace: str) -> set[str]:
        """Every replica that wrote an object of the namespace."""
        return {w.replica for w in self.writes if w.namespace == namespace}


def _lines(path: Path) -> Iterable[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a line cut by SIGKILL
                continue


def _at(record: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def read(logs: Mapping[str, Path], buckets: int) -> Ownership:
    """The tenures and writes in the replicas' logs (replica name -> JSON log file)."""
    result = Ownership(buckets)
    for replica, path in logs.items():
        open_: dict[int, Tenure] = {}
        tenures: list[Tenure] = []
        writes: list[Write] = []
        for record in _lines(path):
            change = record.get("change")
            if change is not None and "bucket" in record:
                bucket = int(record["bucket"])
                if change == "acquired":
                    open_[bucket] = Tenure(replica, bucket, _at(record))
                    tenures.append(open_[bucket])
                elif bucket in open_:
                    open_.pop(bucket).closed = _at(record)
            elif record.get("write") == "status":
                ref = record.get("object") or {}
                writes.append(
                    Write(replica, ref.get("namespace", ""), ref.get("name", ""), float(record["sent"]))
                )
        # By the time each write was sent, not logged: one in flight when the bucket was let go still
        # passed its ownership check before that.
        for write in sorted(writes, key=lambda w: w.at):
            bucket = bucket_of(write.namespace, buckets)
            tenure = next(
                (t for t in tenures if t.bucket == bucket and t.acquired <= write.at <= t.closed), None
            )
            if tenure is None:
                result.outside.append(write)
            else:
                tenure.writes.append(write.at)
        result.tenures += tenures
        result.writes += writes
    return result
