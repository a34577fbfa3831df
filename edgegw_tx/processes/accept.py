"""
Accepting from a listening socket shared by several processes, fairly.

Every data-plane process waits on the same listening socket; the kernel wakes
them all for a new connection and the first to run takes it. Twisted's port
then accepts up to 100 connections in a row, so one process can take a whole
burst (a load test's connections, a proxy's pool) and keep them while the
others idle: with wrk -c4 or -c16 against two processes, often all on one.

``BalancedAccept`` wraps the data plane's factory: the port accepts one
connection per wake-up and then stops accepting for a moment that grows with
the connections this process holds (``held`` x ``ACCEPT_PAUSE_STEP``, at most
``ACCEPT_PAUSE_MAX``), so a process holding fewer takes the next one. Measured
on two processes: wrk -c4 to -c32 split evenly, and a flood of one-request
connections (``Connection: close``) as fast as without the pause.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import ILoggingContext, IProtocolFactory
from zope.interface import implementer

ACCEPT_PAUSE_STEP = 0.00005
"""Seconds of pause per connection held, after each accept."""

ACCEPT_PAUSE_MAX = 0.002
"""The longest pause, in seconds."""


@implementer(IProtocolFactory, ILoggingContext)
class BalancedAccept:
    """A server factory's stand-in that counts its connections and paces the port's accepts."""

    def __init__(self, factory: Any, reactor: Any):
        """
        :param factory: the real server factory (the data plane's HTTP front).
        :param reactor: the clock of the pauses.
        """
        self.factory = factory
        self._reactor = reactor
        # The protocols of the connections accepted here, until seen closed.
        # (Not a WeakSet: the compiled HTTP front's protocols take no weak
        # references.)
        self._held: set[Any] = set()
        self._resume: Any = None

    @property
    def held(self) -> int:
        """Connections open now; closed ones are forgotten (their transport says)."""
        closed = [
            p for p in self._held
            if not getattr(getattr(p, "transport", None), "connected", False)
        ]
        self._held.difference_update(closed)
        return len(self._held)

    # -- IProtocolFactory, as the port uses it -------------------------------

    def doStart(self) -> None:
        self.factory.doStart()

    def doStop(self) -> None:
        if self._resume is not None and self._resume.active():
            self._resume.cancel()
        self.factory.doStop()

    def logPrefix(self) -> str:
        return type(self.factory).__name__

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self.factory.buildProtocol(addr)
        if protocol is not None:
            self._held.add(protocol)
        return protocol

    # -- the port ------------------------------------------------------------

    def balance(self, port: Any) -> None:
        """
        Pace ``port``, a ``tcp.Port`` serving this factory (from
        ``adoptStreamPort``): its ``doRead`` accepts once, then pauses.
        """
        if not hasattr(port, "numberAccepts"):
            return
        accept = type(port).doRead

        def doRead() -> Any:
            port.numberAccepts = 1
            result = accept(port)
            held = self.held
            if held and port.connected and (self._resume is None or not self._resume.active()):
                port.stopReading()
                pause = min(held * ACCEPT_PAUSE_STEP, ACCEPT_PAUSE_MAX)
                self._resume = self._reactor.callLater(pause, self._resumed, port)
            return result

        # The reactor calls the port's doRead attribute: this one, for this port only.
        port.doRead = doRead

    @staticmethod
    def _resumed(port: Any) -> None:
        if port.connected:
            port.startReading()
