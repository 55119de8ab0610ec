"""`python -m wft_operator`: run the operator (all namespaces, or WFT_NAMESPACES).

    python -m wft_operator                 # namespaces from WFT_NAMESPACES, else all
    python -m wft_operator -A              # all namespaces, whatever WFT_NAMESPACES says
    python -m wft_operator -n team-a -n team-b

Serves /healthz on WFT_HEALTH_PORT (Kopf's liveness endpoint) and /metrics on
WFT_METRICS_PORT. One replica: Kopf runs standalone (no peering objects to install).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
from collections.abc import Sequence

import kopf

from . import handlers  # noqa: F401  (registers the handlers)
from .settings import Settings, SettingsError


def operator_kwargs(settings: Settings, all_namespaces: bool, namespaces: Sequence[str]) -> dict:  # type: ignore[type-arg]
    """Arguments for `kopf.operator`/`kopf.run` (shared with the tests and the benchmark)."""
    chosen = list(namespaces) or ([] if all_namespaces else settings.namespaces)
    host = f"[{settings.bind_address}]" if ":" in settings.bind_address else settings.bind_address
    liveness = f"http://{host}:{settings.health_port}/healthz" if settings.health_port else None
    return {
        "clusterwide": not chosen,
        "namespaces": chosen,
        "standalone": True,
        "liveness_endpoint": liveness,
        "memo": kopf.Memo(settings=settings),
    }


def run_in_thread(
    settings: Settings, stop: threading.Event, ready: threading.Event | None = None
) -> threading.Thread:
    """Start the operator on its own event loop in a daemon thread (tests, benchmark)."""
    kwargs = operator_kwargs(settings, all_namespaces=False, namespaces=())

    def target() -> None:
        asyncio.run(kopf.operator(stop_flag=stop, ready_flag=ready, **kwargs))

    thread = threading.Thread(target=target, name="wft-operator", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wft_operator",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="serve all namespaces")
    parser.add_argument(
        "-n", "--namespace", action="append", default=[], help="serve this namespace (repeatable)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = Settings.from_env()
    except SettingsError as err:
        print(f"wft-operator: {err}", file=sys.stderr)
        return 2
    kopf.run(**operator_kwargs(settings, args.all_namespaces, args.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
