"""The `detection-operator` command line."""

from __future__ import annotations

import argparse
import sys

from . import __version__


def _run(args: argparse.Namespace) -> int:
    import kopf

    from . import handlers  # noqa: F401  (registers the handlers with kopf)
    from .settings import Settings

    settings = Settings.from_env()
    namespaces = tuple(args.namespace) or settings.namespaces
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    liveness = args.liveness or f"http://0.0.0.0:{settings.liveness_port}/healthz"
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=True,
        liveness_endpoint=liveness,
    )
    return 0


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
    run.add_argument("--liveness", help="liveness endpoint URL (default http://0.0.0.0:8080/healthz)")
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `detection-operator` console script."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
