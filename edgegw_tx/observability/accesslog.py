"""
The data plane's access log: one JSON object per request, written off the
reactor thread.

Per request the reactor encodes the caller's dict and appends the bytes to
one buffer (``AccessLog.write``).  Every ``interval`` seconds, or as soon as
``batch_lines`` lines are waiting, the buffer is handed whole to one writer
thread, which writes the batch with one ``write`` and rotates the file by size
with ``twisted.python.logfile.LogFile``.  (``write`` turns each line into
JSON at once, with orjson: see ``AccessLog.write`` for why.)
So a slow or full disk costs the reactor nothing, and the order of the lines
is the order of the requests.

A line that cannot be written is dropped and counted, never raised to the
caller: an unwritable path (the file is tried again at most once a second),
a full disk (``ENOSPC``), a value orjson cannot encode, or a writer so far
behind that ``max_backlog`` lines already wait.  ``on_drop(n)`` is called on
the reactor thread with each such count (the metric of dropped lines).

``reopen()`` closes and reopens the file (``SIGHUP`` after ``logrotate``
moved it); ``close()`` writes what is waiting and fires once it is on disk.
"""

import errno
import os
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.logfile import LogFile

_log = Logger(namespace="edgegw.accesslog")
_dumps = orjson.dumps
_NEWLINE = orjson.OPT_APPEND_NEWLINE

FIELDS = (
    "time",
    "request_id",
    "client",
    "method",
    "path",
    "status",
    "endpoint",
    "version",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "user_agent",
    "traceparent",
)
"""The fields of a line, in the order the HTTP layer is expected to give them
(docs/observability.md).  ``time`` may be epoch seconds (a float): the writer
thread turns it into an RFC 3339 UTC time with milliseconds
(``2026-12-07T20:15:00.123Z``), so the reactor does not."""

STDOUT = "-"


def duration_ms(seconds: float) -> float:
    """
    A duration as the access log's ``duration_ms``: milliseconds rounded to
    the microsecond (integer arithmetic: ``round(x, 3)`` cost 0.2 µs a line).
    """
    return int(seconds * 1_000_000.0 + 0.5) / 1000

Line = dict[str, Any]


class Sink(Protocol):
    """Where batches go: a ``LogFile``, standard output, or a test's fake."""

    def write(self, data: bytes) -> Any:
        """Write ``data`` whole (it may raise ``OSError``)."""

    def flush(self) -> Any:
        """Push what was written to the operating system."""

    def reopen(self) -> Any:
        """Close and open the file again under its path."""

    def close(self) -> Any:
        """Close it for good."""


class LineWriter(Protocol):
    """What the data plane needs of an access log: an ``AccessLog``, or a test's stand-in."""

    def write(self, line: Line) -> None:
        """Take one line; never raises, never blocks."""

    def reopen(self) -> None:
        """Open the file again under its path (SIGHUP, after logrotate)."""

    def close(self) -> "Deferred[None]":
        """Write what is pending and close; fires when done."""


class Writer(Protocol):
    """Runs the blocking work in order on one thread other than the reactor's."""

    def submit(self, work: Callable[[], object]) -> None:
        """Run ``work()`` after everything submitted before it."""

    def call_back(self, f: Callable[..., object], *args: Any) -> None:
        """From inside ``work``: run ``f(*args)`` on the reactor thread."""

    def stop(self) -> None:
        """End the thread once what was submitted ran."""


class _StdoutSink:
    """The process's standard output (``--access-log -``), unbuffered, never closed."""

    def __init__(self) -> None:
        self._file = open(1, "wb", buffering=0, closefd=False)

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def flush(self) -> None:
        pass

    def reopen(self) -> None:
        pass

    def close(self) -> None:
        pass


class AppendLogFile(LogFile):
    """
    A ``LogFile`` opened in append mode (``O_APPEND``): each batch lands at the
    file's current end, so a file truncated under it (``logrotate``'s
    ``copytruncate``) is not refilled with zeros up to the old offset, and
    processes sharing one file (``--processes``) do not write over each
    other's lines.
    """

    def __init__(self, path: str, max_bytes: int | None) -> None:
        full = os.path.abspath(path)
        LogFile.__init__(self, os.path.basename(full), os.path.dirname(full), max_bytes or 0)

    def _openFile(self) -> None:
        self.closed = False
        self._file = open(self.path, "ab", 0)
        self.size = self._file.tell()


def open_sink(path: str, max_bytes: int | None) -> Sink:
    """
    The sink for ``path``: standard output for ``-``, else a ``LogFile``
    rotated once it holds ``max_bytes`` (never when None).  Blocking: runs on
    the writer thread.
    """
    if path == STDOUT:
        return _StdoutSink()
    return AppendLogFile(path, max_bytes)


class ThreadWriter:
    """A ``Writer`` on one daemon thread of its own (not the reactor's pool,
    which the database and builds use)."""

    def __init__(self, reactor: Any, name: str = "edgegw-accesslog") -> None:
        self._reactor = reactor
        self._queue: "queue.SimpleQueue[Callable[[], object] | None]" = queue.SimpleQueue()
        self._writer_thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._writer_thread.start()

    def submit(self, work: Callable[[], object]) -> None:
        self._queue.put(work)

    def call_back(self, f: Callable[..., object], *args: Any) -> None:
        self._reactor.callFromThread(f, *args)

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except Exception:  # never ends the thread: the next batch may succeed
                _log.failure("access log writer failed")


class _Clock:
    """Epoch seconds to RFC 3339 UTC times with milliseconds, the formatting of
    the whole second done once per second and the whole text once per
    millisecond (under load, lines in a row share both)."""

    __slots__ = ("second", "prefix", "milli", "text")

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""
        self.milli = -1
        self.text = ""

    def format(self, seconds: float) -> str:
        milli = int(seconds * 1000)
        if milli == self.milli:
            return self.text
        whole = milli // 1000
        if whole != self.second:
            self.second = whole
            self.prefix = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        self.milli = milli
        text = self.text = "%s.%03dZ" % (self.prefix, milli - whole * 1000)
        return text


class AccessLog:
    """
    The access log of one data-plane process (see the module docstring).

    :param path: the file, or ``-`` for standard output.
    :param reactor: the clock for the batching timer, and the thread the
        ``on_drop`` calls come back on.
    :param max_bytes: rotate the file once it holds this many bytes; None or
        0 for never (``logrotate`` and ``reopen()`` instead).
    :param on_drop: ``on_drop(n)``: ``n`` more lines were dropped.
    :param interval: seconds a line may wait before its batch is written.
    :param batch_lines: lines that make a batch go at once.
    :param max_backlog: most lines handed to the writer and not yet written;
        beyond, new batches are dropped (a disk that stalls).
    :param writer: the thread that writes; a new ``ThreadWriter`` by default.
    :param open_sink: ``open_sink(path, max_bytes) -> Sink``, called on the
        writer thread; tests pass fakes.
    :ivar dropped: lines dropped so far.
    :ivar written: lines written so far.
    """

    retry_open = 1.0

    def __init__(
        self,
        path: str,
        reactor: Any,
        max_bytes: int | None,
        on_drop: Callable[[int], None],
        *,
        interval: float = 0.2,
        batch_lines: int = 1024,
        max_backlog: int = 100_000,
        writer: Writer | None = None,
        open_sink: Callable[[str, int | None], Sink] = open_sink,
    ) -> None:
        if not path:
            raise ValueError("the access log needs a path, or - for standard output")
        if max_bytes is not None and max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if batch_lines < 1 or interval <= 0:
            raise ValueError("batch_lines must be at least 1 and interval positive")
        self.path = path
        self.max_bytes = max_bytes
        self.interval = interval
        self.batch_lines = batch_lines
        self.max_backlog = max_backlog
        self.dropped = 0
        self.written = 0
        self._reactor = reactor
        self._on_drop = on_drop
        self._open_sink = open_sink
        self._writer: Writer = writer if writer is not None else ThreadWriter(reactor)
        # The encoded lines waiting for the next batch, appended to one
        # buffer: kept as a list of bytes objects until the batch went, they
        # cost 1.3 µs more per line (256 live objects of orjson's, freed
        # together, made the allocator give memory back and take it again).
        self._pending = bytearray()
        self._pending_lines = 0
        self._timer: Any = None
        self._backlog = 0  # lines submitted to the writer and not yet reported back
        self._closed = False
        # Owned by the writer thread:
        self._sink: Sink | None = None
        self._next_open = 0.0
        self._open_error: str | None = None
        self._time_format = _Clock()

    # -- the reactor's side ------------------------------------------------

    def write(self, line: Line) -> None:
        """
        Queue one request's line (a dict of JSON values; its numeric
        ``time`` is replaced). It is encoded here, at once (under 1 µs):
        keeping a batch of dicts alive until the writer thread encoded them
        cost 9 µs of CPU per request with hello (bench/cpu.py; the garbage
        collector's young generations filled with them, and the writer held
        the GIL while encoding); encoded bytes are not tracked, and the
        writer thread only writes, which releases the GIL.
        """
        when = line.get("time")
        if when.__class__ is float or when.__class__ is int:
            line["time"] = self._time_format.format(when)
        try:
            data = _dumps(line, option=_NEWLINE)
        except (TypeError, ValueError, OverflowError):
            self._count_drop(1)
            return
        self._pending += data
        n = self._pending_lines = self._pending_lines + 1
        if n == 1:
            if not self._closed:
                self._timer = self._reactor.callLater(self.interval, self.flush)
        elif n >= self.batch_lines:
            self.flush()

    def flush(self) -> None:
        """Hand the waiting lines to the writer now."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        lines = self._pending_lines
        if not lines:
            return
        data = bytes(self._pending)
        self._pending = bytearray()
        self._pending_lines = 0
        if self._closed:
            self._count_drop(lines)
            return
        if self._backlog + lines > self.max_backlog:
            self._count_drop(lines)
            return
        self._backlog += lines
        self._writer.submit(lambda: self._write_batch(data, lines))

    def reopen(self) -> None:
        """Close and reopen the file under its path (after ``logrotate`` moved it)."""
        self.flush()
        if not self._closed:
            self._writer.submit(self._reopen_sink)

    def close(self) -> "Deferred[None]":
        """Write what waits, close the file and end the thread; fires when done."""
        if self._closed:
            return succeed(None)
        self.flush()
        self._closed = True
        done: Deferred[None] = Deferred()

        def finish() -> None:
            self._close_sink()
            self._writer.call_back(done.callback, None)

        self._writer.submit(finish)
        self._writer.stop()
        return done

    def _count_drop(self, n: int) -> None:
        if n:
            self.dropped += n
            try:
                self._on_drop(n)
            except Exception:
                _log.failure("counting dropped access log lines failed")

    def _batch_done(self, submitted: int, written: int, dropped: int) -> None:
        self._backlog -= submitted
        self.written += written
        self._count_drop(dropped)

    # -- the writer thread's side ------------------------------------------

    def _ensure_sink(self) -> Sink | None:
        if self._sink is not None:
            return self._sink
        now = self._reactor.seconds()
        if now < self._next_open:
            return None
        try:
            self._sink = self._open_sink(self.path, self.max_bytes)
        except Exception as e:
            self._next_open = now + self.retry_open
            self._report_open_error(f"cannot open the access log {self.path}: {e}")
            return None
        self._open_error = None
        return self._sink

    def _report_open_error(self, message: str) -> None:
        """Say it once per kind of failure, not once per batch."""
        if message != self._open_error:
            self._open_error = message
            _log.error("{message}; its lines are dropped", message=message)

    def _write_batch(self, data: bytes, submitted: int) -> None:
        written = 0
        bad = 0  # lines orjson refused were counted by write
        try:
            sink = self._ensure_sink()
            if sink is not None and data:
                try:
                    sink.write(data)
                    sink.flush()
                    written = submitted - bad
                except OSError as e:
                    if e.errno == errno.ENOSPC:
                        self._report_open_error(f"the disk of the access log {self.path} is full")
                    else:
                        self._report_open_error(f"cannot write the access log {self.path}: {e}")
                        self._drop_sink()  # opened again on a later batch
                else:
                    if self._open_error is not None:
                        self._open_error = None
        finally:
            self._writer.call_back(self._batch_done, submitted, written, submitted - written)

    def _drop_sink(self) -> None:
        sink, self._sink = self._sink, None
        if sink is not None:
            try:
                sink.close()
            except Exception:
                pass

    def _reopen_sink(self) -> None:
        if self._sink is None:
            self._next_open = 0.0
            self._ensure_sink()
            return
        try:
            self._sink.reopen()
        except Exception as e:
            self._report_open_error(f"cannot reopen the access log {self.path}: {e}")
            self._sink = None  # LogFile.reopen closed it first
            self._next_open = 0.0

    def _close_sink(self) -> None:
        self._drop_sink()
