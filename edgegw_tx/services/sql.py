"""
SQL text and values, shared by the SQLite and PostgreSQL connectors.

Pure functions, no I/O:

* ``translate_placeholders````(sql) -> (sql, count)`` turns the ``?``
  placeholders of the call contract into psycopg2's ``%s``.
* ``convert_value`` / ``convert_rows`` turn what a DB-API driver returns into
  JSON values.
* ``statement_inserts`` says whether a statement is an INSERT (SQLite's
  ``last_insert_id``).

Placeholders (PostgreSQL)
=========================

A ``?`` becomes ``%s`` except inside

* ``'...'`` string constants (``''`` escapes a quote), including ``U&'...'``;
* ``E'...'`` escape strings (``\\'`` and ``''`` escape a quote);
* ``"..."`` quoted identifiers (``""`` escapes a quote);
* ``-- ...`` line comments and ``/* ... */`` block comments (which nest in
  PostgreSQL);
* ``$tag$ ... $tag$`` dollar-quoted strings (``tag`` empty or an identifier;
  ``$1`` and ``a$b`` are not dollar quotes).

psycopg2 %-formats the *whole* statement text whenever parameters are passed,
without looking at quotes, so every literal ``%`` is doubled, inside string
constants and comments as well as outside; the connector always passes a
parameter tuple (possibly empty) so the text reaching the server is exactly
the caller's.  An unterminated quote or comment is left for the server to
report; the ``?`` after it are not translated.  PostgreSQL's jsonb operators
``?``, ``?|`` and ``?&`` cannot be written (they are placeholders); use the
functions ``jsonb_exists``, ``jsonb_exists_any`` and ``jsonb_exists_all``.

Values in rows
==============

======================== ==============================================
None                     null
bool                     true / false
int                      a number
float                    a number; NaN and ±infinity (not JSON) as the
                         strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``
Decimal (NUMERIC)        a string, exactly as the database wrote it
str                      a string
bytes, memoryview        base64 (standard alphabet, padded)
datetime, date, time     ISO 8601 (``isoformat()``, with the UTC offset
                         when the value has one)
timedelta (INTERVAL)     seconds as a number (``total_seconds()``;
                         psycopg2 counts a month as 30 days)
UUID                     a string
dict, list (JSON, ARRAY) JSON, converted element by element
anything else            ``str(value)`` (e.g. inet, money), unless the
                         connector's ``fallback`` knows better
======================== ==============================================

Parameters may be any JSON value: lists and objects are bound as JSON text
(psycopg2's ``Json`` for PostgreSQL, ``json.dumps`` for SQLite), booleans as
booleans (SQLite stores 1/0), null as NULL.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "PlaceholderError",
    "convert_row",
    "convert_rows",
    "convert_value",
    "first_keyword",
    "sqlite_params",
    "statement_inserts",
    "translate_placeholders",
]


class PlaceholderError(ValueError):
    """The number of ``?`` and of parameters differ."""


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_" or ch == "$" or ord(ch) > 127


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_" or ord(ch) > 127


def _dollar_tag(sql: str, i: int) -> str | None:
    """The ``$tag$`` opening at ``sql[i] == "$"``, or None."""
    if i > 0 and _is_ident_char(sql[i - 1]):
        return None  # part of an identifier such as a$b
    j = i + 1
    n = len(sql)
    if j < n and sql[j] == "$":
        return "$$"
    if j >= n or not _is_ident_start(sql[j]):
        return None  # $1 positional parameter, or a lone $
    while j < n and (sql[j].isalnum() or sql[j] == "_" or ord(sql[j]) > 127):
        j += 1
    if j < n and sql[j] == "$":
        return sql[i : j + 1]
    return None


def _scan(sql: str, on_code: Callable[[int, str], None]) -> None:
    """
    Walk ``sql``; call ``on_code(index, char)`` for each character that is
    outside literals, identifiers and comments.  The lexer shared by
    ``translate_placeholders`` and ``first_keyword``.
    """
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "'":
            escape = (
                i > 0
                and sql[i - 1] in "eE"
                and (i < 2 or not _is_ident_char(sql[i - 2]))
            )
            i += 1
            while i < n:
                c = sql[i]
                if escape and c == "\\":
                    i += 2
                    continue
                if c == "'":
                    if i + 1 < n and sql[i + 1] == "'":
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == '"':
            i += 1
            while i < n:
                if sql[i] == '"':
                    if i + 1 < n and sql[i + 1] == '"':
                        i += 2
                        continue
                    break
                i += 1
            i += 1
        elif ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif ch == "/" and sql.startswith("/*", i):
            depth = 1
            i += 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth += 1
                    i += 2
                elif sql.startswith("*/", i):
                    depth -= 1
                    i += 2
                else:
                    i += 1
        elif ch == "$" and (tag := _dollar_tag(sql, i)) is not None:
            end = sql.find(tag, i + len(tag))
            i = n if end == -1 else end + len(tag)
        else:
            on_code(i, ch)
            i += 1


def translate_placeholders(sql: str) -> tuple[str, int]:
    """
    Rewrite ``?`` placeholders as ``%s`` for psycopg2 and double every ``%``.

    :return: the new text and the number of placeholders found.
    """
    marks: list[int] = []

    def on_code(index: int, ch: str) -> None:
        if ch == "?":
            marks.append(index)

    _scan(sql, on_code)
    if not marks and "%" not in sql:
        return sql, 0
    out: list[str] = []
    start = 0
    for index in marks:
        out.append(sql[start:index].replace("%", "%%"))
        out.append("%s")
        start = index + 1
    out.append(sql[start:].replace("%", "%%"))
    return "".join(out), len(marks)


def check_count(placeholders: int, params: Sequence[Any]) -> None:
    """
    :raises PlaceholderError: when ``params`` does not fill the placeholders.
    """
    if placeholders != len(params):
        p = "placeholder" if placeholders == 1 else "placeholders"
        v = "parameter was" if len(params) == 1 else "parameters were"
        raise PlaceholderError(
            f"the statement has {placeholders} {p} but {len(params)} {v} given"
        )


def first_keyword(sql: str) -> str:
    """The first word of ``sql`` outside comments, upper-cased (``""`` if none)."""
    chars: list[str] = []
    done = False

    def on_code(index: int, ch: str) -> None:
        nonlocal done
        if done:
            return
        if ch.isalpha() or (chars and (ch.isalnum() or ch == "_")):
            chars.append(ch)
        elif chars or not (ch.isspace() or ch in "(;"):
            done = True

    _scan(sql, on_code)
    return "".join(chars).upper()


def statement_inserts(sql: str) -> bool:
    """Whether ``sql`` starts with INSERT or REPLACE (after comments)."""
    return first_keyword(sql) in ("INSERT", "REPLACE")


_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return _NON_FINITE[value]


def convert_value(value: Any, fallback: Callable[[Any], Any] = str) -> Any:
    """One database value as a JSON value (the table in the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {str(k): convert_value(v, fallback) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [convert_value(v, fallback) for v in value]
    return fallback(value)


def convert_row(
    columns: Sequence[str], row: Sequence[Any], fallback: Callable[[Any], Any] = str
) -> dict[str, Any]:
    """One row as ``{column: value}``."""
    return {name: convert_value(value, fallback) for name, value in zip(columns, row)}


def convert_rows(
    description: Sequence[Sequence[Any]] | None,
    rows: Sequence[Sequence[Any]],
    fallback: Callable[[Any], Any] = str,
) -> dict[str, Any]:
    """
    The ``data`` of a ``query``: ``{"columns": [...], "rows": [{column: value}]}``
    from a cursor's ``description`` and ``fetchall()``.
    """
    columns = [str(d[0]) for d in description] if description else []
    return {
        "columns": columns,
        "rows": [convert_row(columns, row, fallback) for row in rows],
    }


def sqlite_params(params: Sequence[Any]) -> tuple[Any, ...]:
    """Parameters for sqlite3: lists and objects as JSON text."""
    return tuple(
        json.dumps(p, ensure_ascii=False, separators=(",", ":"))
        if isinstance(p, (list, dict))
        else p
        for p in params
    )
