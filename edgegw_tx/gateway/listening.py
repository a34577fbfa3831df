"""
A listening service that stops without resetting connections.

Closing a listening socket makes the kernel reset every connection still in
its accept queue: the handshake was done, the client's ``connect()`` returned
and its request was sent, yet it gets a reset without an answer.  Under load
there are always a few such connections when the gateway stops (SIGTERM).
``DrainingServerService`` first accepts every connection already queued (they
are served like any other: answered, or refused 503 by a pool that is
stopping), then stops the socket listening at once (``shutdown(SHUT_RD)`` on
Linux), so a client connecting a moment later is refused (ECONNREFUSED)
rather than reset; Twisted closes the socket as usual afterwards.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

# A bound on the accept rounds while draining: each round accepts up to the
# port's numberAccepts (100 or more) connections.
_MAX_ROUNDS = 100


def drain_accept_queue(port: Any) -> int:
    """
    Accept every connection queued on ``port`` (a listening
    ``twisted.internet.tcp.Port``) and stop it listening at once; do nothing
    for a port of another kind.

    :return: how many connections were accepted.
    """
    sock = getattr(port, "socket", None)
    if sock is None or not getattr(port, "connected", False) or not hasattr(port, "sessionno"):
        return 0
    port.stopReading()
    accepted = 0
    for _ in range(_MAX_ROUNDS):
        before = port.sessionno
        port.doRead()  # accepts until the queue is empty (or numberAccepts)
        if port.sessionno == before:
            break
        accepted += port.sessionno - before
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # not Linux, or not listening any more: the close does it
    return accepted


class DrainingServerService(Service):
    """
    Listens on an endpoint while running; stopping drains the accept queue
    first.  A port that cannot be bound makes the start raise (so ``twistd``
    exits with the reason instead of running without its listener), and
    ``whenListening`` hands the port to whoever needs its number.
    """

    log = Logger()

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.endpoint = endpoint
        self.factory = factory
        self._listening: Deferred[IListeningPort] | None = None
        self._port: IListeningPort | None = None
        self._error: Failure | None = None
        self._waiters: list[Deferred[IListeningPort]] = []
        self._binding = False

    def privilegedStartService(self) -> None:
        """Bind now (``twistd`` calls this before it drops privileges); raise what kept the port from binding."""
        Service.privilegedStartService(self)
        self._error = None
        self._binding = True
        try:
            self._listening = self.endpoint.listen(self.factory)
            self._listening.addCallbacks(self._bound, self._not_bound)
        finally:
            self._binding = False
        if self._error is not None:
            self._error.raiseException()

    def startService(self) -> None:
        """Bind, unless ``privilegedStartService`` did already."""
        Service.startService(self)
        if self._listening is None:
            self.privilegedStartService()

    def whenListening(self) -> Deferred[IListeningPort]:
        """Fire with the listening port once bound (at once if it is), or with what kept it from binding."""
        if self._port is not None:
            return succeed(self._port)
        if self._error is not None:
            return fail(self._error)
        waiter: Deferred[IListeningPort] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def stopService(self) -> Deferred[None]:
        """Accept what the kernel queued, then stop listening; a bind still under way is cancelled."""
        Service.stopService(self)
        port, listening = self._port, self._listening
        self._port = self._listening = None
        if port is not None:
            drain_accept_queue(port)
            stopped = port.stopListening()
            return stopped if stopped is not None else succeed(None)
        if listening is not None:
            listening.cancel()
        return succeed(None)

    def _bound(self, port: IListeningPort) -> None:
        self._port = port
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(port)

    def _not_bound(self, failure: Failure) -> None:
        waiters, self._waiters = self._waiters, []
        if not failure.check(CancelledError):
            self._error = failure
            if not self._binding:
                self.log.failure("Listening on {endpoint} failed", failure, endpoint=self.endpoint)
        for waiter in waiters:
            waiter.errback(failure)
