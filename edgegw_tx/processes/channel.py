"""
The control channel between the control process and one data-plane process.

Messages are the process plane's frames (``edgegw_tx.workers.framing``: a
4-byte big-endian length, then one JSON object) of three types:

* ``{"type": "call", "id": n, "command": name, "args": {...}}`` asks the peer
  to run ``command``; it answers with
* ``{"type": "answer", "id": n, "ok": true, "data": ...}`` or
  ``{"type": "answer", "id": n, "ok": false, "kind": ..., "error": message}``;
* ``{"type": "note", "command": name, "args": {...}}`` is a call that wants
  no answer (a worker's log line).

Calls are correlated with answers by id through a dict id -> Deferred, as
AMP does with its tags, so answers may come in any order; commands are run
in the order they arrive, so one side's calls take effect on the other side
in the order they were made. When the connection is lost every unanswered
call fails with ``ChannelClosed``. Unlike AMP there is no 64 KiB cap per
value: a snapshot of many pools is one frame.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred, fail, maybeDeferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from edgegw_tx.workers.framing import DEFAULT_MAX_FRAME, FrameProtocol, encode_frame

CHANNEL_FRAME_TYPES = frozenset({"call", "answer", "note"})

_log = Logger(namespace="edgegw.processes")


class ChannelClosed(Exception):
    """The peer went away (or was never there) before answering."""


class RemoteError(Exception):
    """
    The peer's command failed: ``kind`` is the class name of its exception,
    ``message`` what it said (``str()`` of this error is the message alone).
    """

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


class UnknownCommand(Exception):
    """A call or note named a command the receiving side does not have."""


Responder = Callable[..., Any]
"""``responder(**args) -> value | Deferred``: runs one command."""


class ControlChannel(Protocol):
    """
    Calls, answers and notes over any stream transport: a child's stdio on
    one side, a ``ProcessProtocol``'s pipes on the other, a ``StringTransport``
    in the tests.

    :ivar connected: True between ``connectionMade`` and ``connectionLost``.
    """

    def __init__(
        self,
        responders: Mapping[str, Responder],
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        on_close: Callable[[Failure], object] | None = None,
    ):
        """
        :param responders: command name -> function run for the peer's calls
            and notes (keyword arguments from ``args``).
        :param on_close: called once with the reason when the connection is
            lost, after the unanswered calls failed.
        """
        self._responders = dict(responders)
        self._on_close = on_close
        self._parser = FrameProtocol(
            self._frame_received, self._violation, max_frame=max_frame, types=CHANNEL_FRAME_TYPES
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, Deferred[Any]] = {}
        self.connected = False
        self._lost = False

    # -- the connection ----------------------------------------------------

    def connectionMade(self) -> None:
        self.connected = not self._lost

    def dataReceived(self, data: bytes) -> None:
        self._parser.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._lost:
            return
        self._lost = True
        self.connected = False
        self._parser.stop()
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(ChannelClosed("the other process went away before answering"))
        if self._on_close is not None:
            self._on_close(reason if reason is not None else Failure(ChannelClosed("closed")))

    # -- sending -----------------------------------------------------------

    def call(self, command: str, **args: Any) -> Deferred[Any]:
        """
        Run ``command`` on the other side.

        :return: fires with the answer's ``data``; fails with ``RemoteError``
            when the command failed there, ``ChannelClosed`` when the other
            side went away first.
        """
        if not self.connected:
            return fail(ChannelClosed(f"cannot send {command}: the channel is closed"))
        call_id = next(self._ids)
        # Cancelling (a timeout) forgets the call: its late answer is dropped.
        def forget(_: Deferred[Any]) -> None:
            self._pending.pop(call_id, None)

        d: Deferred[Any] = Deferred(forget)
        self._pending[call_id] = d
        self._send({"type": "call", "id": call_id, "command": command, "args": args})
        return d

    def notify(self, command: str, **args: Any) -> None:
        """Run ``command`` on the other side, wanting no answer (dropped when closed)."""
        if self.connected:
            self._send({"type": "note", "command": command, "args": args})

    def close(self) -> None:
        """Close the connection (the other side sees end of file)."""
        if self.connected and self.transport is not None:
            self.transport.loseConnection()

    def _send(self, frame: dict[str, Any]) -> None:
        transport = self.transport
        assert transport is not None, "sent only while connected"
        transport.write(encode_frame(frame))

    # -- receiving ---------------------------------------------------------

    def _frame_received(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "answer":
            call_id = frame.get("id")
            d = self._pending.pop(call_id, None) if isinstance(call_id, int) else None
            if d is None:
                return  # the answer to a call cancelled meanwhile
            if frame.get("ok"):
                d.callback(frame.get("data"))
            else:
                d.errback(RemoteError(str(frame.get("kind")), str(frame.get("error"))))
            return
        d = self._run(frame)
        if kind == "call":
            d.addCallbacks(
                self._answered, self._refused, callbackArgs=(frame["id"],), errbackArgs=(frame["id"],)
            )
        else:
            d.addErrback(
                lambda f: _log.failure("note {command} failed", f, command=frame.get("command"))
            )

    def _run(self, frame: dict[str, Any]) -> Deferred[Any]:
        command = frame.get("command")
        responder = self._responders.get(command) if isinstance(command, str) else None
        if responder is None:
            return fail(UnknownCommand(f"unknown command {frame.get('command')!r}"))
        args = frame.get("args") or {}
        if not isinstance(args, dict):
            return fail(TypeError("args must be an object"))
        return maybeDeferred(responder, **args)

    def _answered(self, data: Any, call_id: int) -> None:
        if self.connected:
            try:
                self._send({"type": "answer", "id": call_id, "ok": True, "data": data})
            except (TypeError, ValueError) as e:
                self._refused(Failure(e), call_id)

    def _refused(self, failure: Failure, call_id: int) -> None:
        error = failure.value
        if not isinstance(error, (RemoteError, UnknownCommand)) and not hasattr(error, "status"):
            # Not an expected refusal (a GatewayError has a status): keep the traceback.
            _log.failure("a control command failed", failure)
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        if self.connected:
            kind = type(error).__name__
            self._send({"type": "answer", "id": call_id, "ok": False, "kind": kind, "error": message})

    def _violation(self, problem: str) -> None:
        _log.error("control channel broken: {problem}", problem=problem)
        if self.transport is not None:
            self.transport.loseConnection()
