"""
Places in a handler's code, said in the user's terms.

The handler *is* ``src/main.rs`` of the endpoint's cargo project
(``project.write_project``), so rustc's line and column numbers are the user's
own, but the file name ``src/main.rs`` is the gateway's.  Compile errors are
reported by line (and the CLI names the file it deployed); a panic's location
comes from Rust's panic hook on the worker's stderr
(``thread 'main' panicked at src/main.rs:4:37:``), so the gateway renames the
file on each stderr line before it reaches the endpoint's log: the endpoint's
name with ``.rs``, which is the file ``edgegw deploy NAME.rs`` reads by default.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Protocol

# ``src/main.rs:<line>:<column>`` not preceded by a path character, so
# ``/registry/foo/src/main.rs:1:1`` (some other crate's file) stays as it is.
_MAIN_RS_AT = re.compile(r"(?<![\w./-])src/main\.rs(?=:\d+:\d+)")

LogWriter = Callable[..., object]


class LocatedLog(Protocol):
    """A worker log taking the trace id or not: what ``WorkerPool`` accepts either way."""

    def __call__(self, stream: str, line: str, trace_id: str | None = None) -> None:
        """Record one line of ``stream``."""


def source_name(endpoint_name: str) -> str:
    """The file name a handler's locations are given under: ``hello`` → ``hello.rs``."""
    return endpoint_name if endpoint_name.endswith(".rs") else endpoint_name + ".rs"


def user_locations(line: str, source: str) -> str:
    """``line`` with every ``src/main.rs:L:C`` of the handler's own file as ``source:L:C``."""
    if "src/main.rs" not in line:
        return line
    return _MAIN_RS_AT.sub(lambda _: source, line)


def locating_log(log: LogWriter, endpoint_name: str) -> LocatedLog:
    """
    ``log(stream, line, trace_id=None)`` that passes the worker's stderr lines
    through ``user_locations`` first.  ``log`` may take the trace id or not
    (a worker pool accepts both); it is asked once, here.
    """
    source = source_name(endpoint_name)
    try:
        inspect.signature(log).bind("stderr", "line", None)
        traced = True
    except (TypeError, ValueError):
        traced = False

    def located(stream: str, line: str, trace_id: str | None = None) -> None:
        if stream == "stderr":
            line = user_locations(line, source)
        if traced:
            log(stream, line, trace_id)
        else:
            log(stream, line)

    return located
