"""
Reading a management API request body as JSON: the one place every body is parsed.

``json.loads`` alone lets through what later breaks the gateway with a 500:
nesting deep enough to exhaust Python's recursion (about 1,000 levels raise
``RecursionError``; a few hundred pass and break orjson or a recursive check
later), strings holding a lone UTF-16 surrogate (``"\\ud800"`` is valid JSON
syntax but no Unicode text: it cannot be written to the store, a log or a
worker as UTF-8), and ``NaN``/``Infinity``, which are not JSON at all.  Each is
a 400 naming the problem and, for a surrogate, where it is.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edgegw_tx.admin.errors import BadRequest
from edgegw_tx.admin.limits import MAX_JSON_DEPTH

_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json_body(data: bytes) -> Any:
    """The JSON document of a request body, or ``BadRequest`` saying what is wrong with it."""
    if not data.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        document = json.loads(data, parse_constant=_not_json)
    except RecursionError:
        raise BadRequest(_too_deep()) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the request body is not valid JSON: {e}") from None
    _check(document)
    return document


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_deep() -> str:
    return f"the request body is nested too deeply: at most {MAX_JSON_DEPTH} arrays and objects inside each other"


def _check(document: Any) -> None:
    """
    Walk the document without recursion: no container deeper than
    ``MAX_JSON_DEPTH``, no lone surrogate in a string or a key.  Each entry
    keeps its parent and key, so a path is only built for the error.
    """
    stack: list[tuple[Any, int, Any]] = [(document, 1, None)]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(_too_deep())
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise BadRequest(_surrogate_message(key, "a key of " + _path(where)))
                stack.append((item, depth + 1, (where, key)))
        elif isinstance(value, list):
            if depth > MAX_JSON_DEPTH:
                raise BadRequest(_too_deep())
            for index, item in enumerate(value):
                stack.append((item, depth + 1, (where, index)))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise BadRequest(_surrogate_message(value, _path(where)))


def _surrogate_message(text: str, place: str) -> str:
    match = _SURROGATE.search(text)
    assert match is not None, "called only for a text that holds one"
    found = match.group()
    return (
        f"the request body holds a lone surrogate (\\u{ord(found):04x}) in {place}: "
        "JSON strings must be Unicode text"
    )


def _path(where: Any) -> str:
    """``field 'settings.env.X'`` or ``field 'items[2]'`` from the chain of (parent, key) pairs; ``the body`` at the top."""
    parts: list[Any] = []
    while where is not None:
        where, key = where
        parts.append(key)
    text = ""
    for key in reversed(parts):
        text += f"[{key}]" if isinstance(key, int) else ("." if text else "") + key
    return f"field '{text}'" if text else "the body"
