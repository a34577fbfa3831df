"""
A listening service that stops without resetting connections.

Closing a listening socket makes the kernel reset every connection still in
its accept queue: the handshake was done, the client's ``connect()`` returned
and its request was sent, yet it gets a reset without an answer.  Under load
there are always a few such connections when the gateway stops (SIGTERM).
L{DrainingServerService} first accepts every connection already queued (they
are served like any other: answered, or refused 503 by a pool that is
stopping), then stops the socket listening at once (``shutdown(SHUT_RD)`` on
Linux), so a client connecting a moment later is refused (ECONNREFUSED)
rather than reset; Twisted closes the socket as usual afterwards.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.internet.defer import Deferred

# A bound on the accept rounds while draining: each round accepts up to the
# port's numberAccepts (100 or more) connections.
_MAX_ROUNDS = 100


def drain_accept_queue(port: Any) -> int:
    """
    Accept every connection queued on C{port} (a listening
    L{twisted.internet.tcp.Port}) and stop it listening at once; do nothing
    for a port of another kind.

    @return: how many connections were accepted.
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


class DrainingServerService(StreamServerEndpointService):
    """A L{StreamServerEndpointService} whose stop drains the accept queue first."""

    def stopService(self) -> Deferred[None]:
        waiting = self._waitingForPort
        if waiting is not None and waiting.called:
            waiting.addCallback(self._drain)
        stopped: Deferred[None] = StreamServerEndpointService.stopService(self)
        return stopped

    @staticmethod
    def _drain(port: Any) -> Any:
        if port is not None:
            drain_accept_queue(port)
        return port
