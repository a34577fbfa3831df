"""
The program of a data-plane process: ``python -m edgegw_tx.processes.child``.

The control process (``group.py``) spawns it with:

* fd 0 (stdin) and fd 1 (stdout): the control channel (``channel.py``); this
  program moves the channel to a private descriptor and points fd 1 at
  stderr, so a stray ``print`` cannot corrupt a frame;
* fd 2 (stderr): its log, one event per line, which the control process
  copies into its own log;
* fd ``--listen-fd`` (3): the listening socket of public traffic, adopted on
  the ``listen`` command.

It ignores SIGINT (a Ctrl-C in a terminal reaches the whole process group:
the control process decides when its data planes stop). End of file on the
control channel, or SIGTERM, drains its pools and ends it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

FAMILIES = {"inet": socket.AF_INET, "inet6": socket.AF_INET6}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="edgegw data-plane process")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--http", default=None)
    parser.add_argument("--http-limits", type=json.loads, default=None, help="JSON object: the front's limits")
    parser.add_argument(
        "--observe",
        type=json.loads,
        default=None,
        help="JSON object: access_log, access_log_max_bytes, health_path, shutdown_delay (gateway/observe.py)",
    )
    parser.add_argument("--listen-fd", type=int, default=3)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="inet")
    parser.add_argument("--index", type=int, default=1)
    return parser.parse_args(argv)


def _log_to_stderr() -> None:
    """Log events to stderr, one per line: the control process adds time and process."""
    from twisted.logger import ILogObserver, LogEvent, eventAsText, globalLogBeginner
    from zope.interface import provider

    @provider(ILogObserver)
    def observer(event: LogEvent) -> None:
        text = eventAsText(event, includeTimestamp=False, includeSystem=False)
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


def _observer(
    args: argparse.Namespace,
    request_metrics: Any,
    reactor: Any,
    restoring: Callable[[], bool] = lambda: False,
) -> Any:
    """
    This process's ``Observer`` (gateway/observe.py) from ``--observe``: its
    own access log, ``PATH.N`` when rotated by size (one writer per file),
    reopened on SIGHUP (the control process passes its SIGHUP on); its health
    path says "starting" while ``restoring()`` (the route table's flag, set
    by the control process's ``restoring`` command).
    """
    from edgegw_tx.gateway.observe import DEFAULT_HEALTH_PATH, Observer
    from edgegw_tx.observability.accesslog import STDOUT, AccessLog

    options = args.observe or {}
    observer = Observer(
        request_metrics,
        reactor.seconds,
        health_path=options.get("health_path", DEFAULT_HEALTH_PATH),
        restoring=restoring,
    )
    path = options.get("access_log")
    if path:
        max_bytes = options.get("access_log_max_bytes")
        if max_bytes and path != STDOUT:
            path = f"{path}.{args.index}"
        observer.access_log = AccessLog(path, reactor, max_bytes, request_metrics.drop_lines)
        access_log = observer.access_log
        signal.signal(signal.SIGHUP, lambda number, frame: reactor.callFromThread(access_log.reopen))
    return observer


def _observe_shutdown(observer: Any, reactor: Any) -> None:
    """The access log closed at the shutdown's end (draining is ``DataPlane.shutdown``'s first step)."""
    if observer.access_log is not None:
        # "during": after the before-phase drain, and waited for (the writer thread flushes).
        reactor.addSystemEventTrigger("during", "shutdown", observer.access_log.close)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The channel's own copy of stdout; fd 1 then goes to the log.
    control_out = os.dup(1)
    os.dup2(2, 1)
    _log_to_stderr()

    from twisted.internet import reactor
    from twisted.internet.error import ReactorNotRunning
    from twisted.internet.stdio import StandardIO

    from edgegw_tx.gateway.front import data_plane_factory
    from edgegw_tx.gateway.observe import DEFAULT_SHUTDOWN_DELAY
    from edgegw_tx.gateway.routes import RouteTable
    from edgegw_tx.processes.channel import ControlChannel
    from edgegw_tx.observability.metrics import RequestMetrics
    from edgegw_tx.policy.placing import context_of
    from edgegw_tx.processes.dataplane import DataPlane
    from edgegw_tx.services.registry import ServiceRegistry

    routes = RouteTable()
    # This process's request counters: the front bumps them, GET /metrics adds every process's up.
    request_metrics = RequestMetrics()
    observer = _observer(args, request_metrics, reactor, lambda: routes.restoring)
    registry = ServiceRegistry(args.data_dir, reactor=reactor)
    plane = DataPlane(
        routes,
        data_plane_factory(args.http, routes, reactor, args.http_limits, observer),
        registry,
        listen_fd=args.listen_fd,
        family=FAMILIES[args.family],
        index=args.index,
        reactor=reactor,
        request_metrics=request_metrics,
        observer=observer,
        shutdown_delay=float((args.observe or {}).get("shutdown_delay", DEFAULT_SHUTDOWN_DELAY)),
        # Its routes' policies count in its own memory, Redis connections and metrics.
        policy_context=context_of(reactor, registry, request_metrics.count),
    )

    def closed(reason: object) -> None:
        # The control process went away: drain (the shutdown trigger), then end.
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping (SIGTERM)

    channel = ControlChannel(plane.responders(), on_close=closed)
    plane.attach(channel.notify)
    reactor.addSystemEventTrigger("before", "shutdown", plane.shutdown)
    _observe_shutdown(observer, reactor)
    # mypy reads stdio's Windows branch; the POSIX StandardIO takes stdin and stdout.
    StandardIO(channel, stdin=0, stdout=control_out, reactor=reactor)  # type: ignore[call-arg]
    channel.notify("hello", pid=os.getpid())
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
