"""The `detection-operator` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from . import __version__
from .api import sdk_catalog

T = TypeVar("T")


def _run(args: argparse.Namespace) -> int:
    import threading

    import kopf

    from .runtime import handlers, heap  # noqa: F401  (handlers registers the handlers with kopf)
    from .runtime.settings import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    namespaces = tuple(args.namespace) or settings.namespaces
    # kopf's formatter goes on the root logger, so our loggers (detection_operator.*) use it too: with
    # --log-format json every line is one JSON object, per-object lines carry "object".
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    # Raised by kopf once the startup handlers are done and the watches start: /readyz answers 200 then.
    ready = threading.Event()
    heap.settle()
    # standalone: no kopf peering. It would not give one active replica (see election.py); the Lease does.
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        # Our identity, not kopf's default (user@host): the image's uid 65532 has no passwd entry,
        # and getpass.getuser() raises for it.
        identity=settings.election.identity,  # type: ignore[arg-type]  # kopf's NewType of str
        ready_flag=ready,
        memo=kopf.Memo(ready=ready),
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .tools import validate
    from .tools.documents import ReadError

    try:
        report = validate.validate(args.paths, args.prometheus)
    except ReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(validate.render(report, args.output))
    return 0 if report.ok and report.checked else 1


def _backtest(args: argparse.Namespace) -> int:
    from .tools import backtest

    try:
        since, step = backtest.parse_since(args.since), backtest.parse_since(args.step)
        doc = backtest.load_one(args.file)
        progress = None if args.output != "text" else backtest.stderr_progress
        new = backtest.backtest_document(
            doc, args.prometheus, since, step, args.until, args.namespace, progress
        )
        if args.against:
            old_doc = backtest.load_one(args.against)
            old = backtest.backtest_document(
                old_doc, args.prometheus, since, step, args.until, args.namespace, progress
            )
            backtest.stderr_progress("")
            print(backtest.render_diff(old, new))
            return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    backtest.stderr_progress("")
    print(backtest.render(new, args.output))
    return 0


def _cluster(namespace: str | None) -> tuple[Any, str]:
    """A Kubernetes API client from KUBECONFIG, and ``namespace`` or else the context's namespace."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if namespace is None:
        _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
        namespace = (context or {}).get("context", {}).get("namespace", "default")
    return client.ApiClient(configuration), namespace or "default"


def _cluster_errors() -> tuple[type[Exception], ...]:
    """What reading the cluster raises that a user should see as one line, not a traceback."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.config_exception import ConfigException
    from urllib3.exceptions import HTTPError

    return (ValueError, KeyError, ConfigException, ApiException, HTTPError, OSError)


def _read_cluster(namespace: str | None, read: Callable[[Any, str], T]) -> T | None:
    """``read(api, namespace)`` against the cluster in KUBECONFIG; None (the error printed) if it fails."""
    try:
        api, namespace = _cluster(namespace)
        with api:
            return read(api, namespace)
    except _cluster_errors() as exc:
        print(f"error: {_error_text(exc)}", file=sys.stderr)
        return None


def _explain(args: argparse.Namespace) -> int:
    import json

    from .tools import explain

    explained = _read_cluster(args.namespace, lambda api, ns: explain.fetch(api, args.target, ns))
    if explained is None:
        return 2
    print(json.dumps(explained, indent=2) if args.output == "json" else explain.render(explained))
    return 0


def _report(args: argparse.Namespace) -> int:
    import os

    import httpx
    from kubernetes import config

    from .tools import report

    url = args.prometheus or os.environ.get("DETECTION_OPERATOR_PROMETHEUS_URL")
    if not url:
        print(
            "error: no Prometheus: pass --prometheus URL or set DETECTION_OPERATOR_PROMETHEUS_URL",
            file=sys.stderr,
        )
        return 2
    try:
        report.parse_since(args.since)
        api, namespace = _cluster(args.namespace)
        with api, httpx.Client(timeout=args.timeout, trust_env=False) as http:
            query = report.prometheus_query(http, url)
            built = report.build(api, query, namespace, args.since, url, agent_selector=args.agent_selector)
    except (ValueError, report.ReportError, report.PrometheusError, config.ConfigException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.render(built, args.output), end="")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import psycopg

    from .runtime.settings import Settings
    from .store import MigrationError, StoreUnavailable
    from .tools.store import migrate_store

    try:
        config = Settings.from_env().history_store
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if config is None:
        print("error: no history store: set DETECTION_OPERATOR_HISTORY_POSTGRES_HOST", file=sys.stderr)
        return 2
    try:
        before, applied = migrate_store(config, dry_run=args.dry_run)
    except (StoreUnavailable, MigrationError, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    current = max(before, default=0)
    if not applied:
        print(f"{config.target}: schema at version {current}, nothing to apply")
    else:
        verb = "would apply" if args.dry_run else "applied"
        print(f"{config.target}: schema at version {current}, {verb} {', '.join(map(str, applied))}")
    return 0


def _history(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from .runtime.settings import Settings
    from .tools import history
    from .tools.backtest import parse_since

    try:
        since = timedelta(seconds=parse_since(args.since))
        kind, name = history.parse_target(args.target)
        store = Settings.from_env().history_store
    except (ValueError, KeyError) as exc:
        print(f"error: {_error_text(exc)}", file=sys.stderr)
        return 2
    now = datetime.now(UTC)
    records: list[Any] | None
    if store is not None:
        records = _read_store(
            store, kind.kind if kind else None, args.namespace, name, now - since, args.limit
        )
    else:
        records = _read_cluster(args.namespace, lambda api, ns: history.from_status(api, args.target, ns))
    if records is None:
        return 2
    print(history.render(history.select(records, since, now), args.output))
    return 0


def _read_store(
    config: Any, kind: str | None, namespace: str | None, name: str | None, since: Any, limit: int
) -> list[Any] | None:
    """The newest ``limit`` records from the history store (in the context's namespace unless given)."""
    import psycopg

    from .store import HistoryQuery, StoreUnavailable
    from .tools.store import read_store_history

    query = HistoryQuery(kind, namespace or _context_namespace(), name, since, limit=limit)
    try:
        return list(read_store_history(config, query))
    except (StoreUnavailable, psycopg.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _context_namespace() -> str:
    """The kubeconfig context's namespace, else ``default`` (the store needs no cluster to be read)."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        _, context = config.list_kube_config_contexts()  # type: ignore[no-untyped-call]
    except (ConfigException, OSError):
        return "default"
    return str((context or {}).get("context", {}).get("namespace") or "default")


def _error_text(exc: Exception) -> str:
    """One line for ``exc``: an API error by its status and reason (a 404 says what was not found)."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return "not found" if exc.status == 404 else f"the apiserver answered {exc.status} {exc.reason}"
    if isinstance(exc, KeyError):
        return str(exc.args[0]) if exc.args else "unknown key"
    return str(exc) or type(exc).__name__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="detection-operator", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the cluster in KUBECONFIG or in-cluster")
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; default: DETECTION_OPERATOR_NAMESPACES, else all)",
    )
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    validate = sub.add_parser(
        "validate", help="check DetectionPolicy / ModelRoute YAML (files, directories, or - for stdin)"
    )
    validate.add_argument("paths", nargs="+", metavar="FILE|DIR|-")
    validate.add_argument("--prometheus", metavar="URL", help="also have this Prometheus parse every query")
    validate.add_argument("--output", choices=["text", "json"], default="text")
    validate.set_defaults(func=_validate)

    backtest = sub.add_parser("backtest", help="replay a policy or route over Prometheus history")
    backtest.add_argument("file")
    backtest.add_argument("--prometheus", metavar="URL", required=True)
    backtest.add_argument("--since", default="7d", help="how far back (7d, 12h, 90m; default 7d)")
    backtest.add_argument("--until", type=float, default=None, help="end as a Unix time (default: now)")
    backtest.add_argument("--step", default="30s", help="evaluation step (default 30s)")
    backtest.add_argument("--namespace", help="value of $namespace (default: the document's, else default)")
    backtest.add_argument("--against", metavar="OLD_FILE", help="compare with this older version")
    backtest.add_argument("--output", choices=["text", "json", "csv"], default="text")
    backtest.set_defaults(func=_backtest)

    explain = sub.add_parser("explain", help="show the latest decision of dp/NAME or mr/NAME, readable")
    explain.add_argument("target", metavar="KIND/NAME")
    explain.add_argument("-n", "--namespace", default=None)
    explain.add_argument("--output", choices=["text", "json"], default="text")
    explain.set_defaults(func=_explain)

    report = sub.add_parser(
        "report", help="health, trend, alerts and recommendations of every route and policy in a namespace"
    )
    report.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig context's")
    report.add_argument("--since", default="1h", help="the window (1h, 90m, 1h30m, 7d; default 1h)")
    report.add_argument(
        "--prometheus",
        metavar="URL",
        help="default: DETECTION_OPERATOR_PROMETHEUS_URL (the operator's setting)",
    )
    report.add_argument(
        "--timeout", type=float, default=10.0, help="seconds per Prometheus query (default 10)"
    )
    report.add_argument(
        "--agent-selector",
        default=sdk_catalog.DEFAULT_SELECTOR,
        help=f"label matchers of the agents' series (default {sdk_catalog.DEFAULT_SELECTOR}; '' for none)",
    )
    report.add_argument("--output", choices=["md", "json"], default="md")
    report.set_defaults(func=_report)

    migrate = sub.add_parser(
        "migrate",
        help="bring the PostgreSQL history store's schema up to date (the operator also does at start)",
    )
    migrate.add_argument("--dry-run", action="store_true", help="only say which migrations are pending")
    migrate.set_defaults(func=_migrate)
    history = sub.add_parser("history", help="audit records of dp/NAME, mr/NAME or a whole namespace")
    history.add_argument("target", metavar="KIND/NAME", nargs="?", default=None)
    history.add_argument("-n", "--namespace", default=None)
    history.add_argument("--since", default="7d", help="how far back (7d, 12h, 90m; default 7d)")
    history.add_argument("--output", choices=["text", "json", "csv"], default="text")
    history.add_argument(
        "--limit", type=int, default=1000, help="from the history store: the newest this many (default 1000)"
    )
    history.set_defaults(func=_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `detection-operator` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
