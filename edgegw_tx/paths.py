"""
The path-pattern grammar shared by the route table and the admin API.

A pattern is ``/`` alone (the root) or one or more ``/``-separated segments,
each either a literal or a whole-segment parameter ``{name}``::

    /users/{id}/posts/{post_id}

Decisions, so every plane agrees:

* A pattern starts with ``/``; no segment is empty, so ``//x`` and a trailing
  ``/`` (``/hello/``) are rejected.  Only the root ``/`` ends in a slash, and it
  has no segments.
* A parameter is a whole segment; ``/a{b}`` and ``/{a}.json`` are rejected for
  now (a later grammar may allow them).  Its name is an ASCII identifier
  (``[A-Za-z_][A-Za-z0-9_]*``) and is unique within the pattern.  A parameter
  matches one non-empty segment.
* Literal segments may use RFC 3986 path characters (letters, digits,
  ``-._~!$&'()*+,;=:@``), non-ASCII printable characters, and ``%XX`` escapes.
  Spaces, ``?``, ``#``, control characters and stray braces are rejected.
  A literal is compared with the *percent-decoded* request segment, so
  ``Literal.text`` holds the decoded form: ``/caf%C3%A9`` and ``/café`` are the
  same pattern.
* Two patterns that differ only in parameter names (``/users/{id}`` and
  ``/users/{uid}``) match the same requests: they have the same ``shape``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = [
    "METHODS",
    "Literal",
    "Param",
    "PathPattern",
    "PatternError",
    "parse_pattern",
    "validate_method",
]


class PatternError(ValueError):
    """A path pattern is malformed; the message names the problem."""


@dataclass(frozen=True, slots=True)
class Literal:
    """A segment that must equal ``text`` (percent-decoded)."""

    text: str


@dataclass(frozen=True, slots=True)
class Param:
    """A segment captured under ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class PathPattern:
    """
    A parsed pattern.  Equal patterns have equal segments; ``shape`` is equal
    for patterns that match the same requests (parameter names erased).
    """

    text: str
    segments: tuple[Literal | Param, ...]

    @property
    def shape(self) -> str:
        """
        The pattern with parameter names erased, e.g. ``/users/{}``.

        Unambiguous because a literal can never be exactly ``{}`` (braces are
        rejected) — an escaped ``%7B%7D`` literal is shown escaped.
        """
        if not self.segments:
            return "/"
        parts = []
        for seg in self.segments:
            if isinstance(seg, Param):
                parts.append("{}")
            else:
                text = seg.text
                if "%" in text or "/" in text or "{" in text or "}" in text:
                    text = (
                        text.replace("%", "%25")
                        .replace("/", "%2F")
                        .replace("{", "%7B")
                        .replace("}", "%7D")
                    )
                parts.append(text)
        return "/" + "/".join(parts)

    @property
    def param_names(self) -> tuple[str, ...]:
        """The parameter names in order of appearance."""
        return tuple(s.name for s in self.segments if isinstance(s, Param))

    def __str__(self) -> str:
        return self.text


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# RFC 3986 pchar minus pct-encoded (checked separately), plus anything non-ASCII.
_LITERAL_OK = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@%\u0080-\U0010FFFF]*\Z")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _describe(ch: str) -> str:
    if ch == " ":
        return "a space"
    if ch.isprintable():
        return repr(ch)
    code = ord(ch)
    kind = "control" if code < 0x20 or 0x7F <= code < 0xA0 else "unprintable"
    return f"{kind} character U+{code:04X}"


def parse_pattern(text: str) -> PathPattern:
    """
    Parse ``text`` into a ``PathPattern``.

    :raises PatternError: naming the first problem found.
    """
    if not isinstance(text, str):
        raise PatternError(f"pattern must be a string, not {type(text).__name__}")
    if not text:
        raise PatternError("pattern is empty")
    if text[0] != "/":
        raise PatternError(f"pattern {text!r} must start with '/'")
    if text == "/":
        return PathPattern("/", ())
    if text[-1] == "/":
        raise PatternError(f"pattern {text!r} ends with '/' (only the root '/' may)")

    segments: list[Literal | Param] = []
    seen: set[str] = set()
    for raw in text[1:].split("/"):
        if not raw:
            raise PatternError(f"pattern {text!r} has an empty segment ('//')")
        if "{" in raw or "}" in raw:
            segments.append(_parse_param(text, raw, seen))
            continue
        if not _LITERAL_OK.match(raw):
            bad = next(c for c in raw if not _LITERAL_OK.match(c))
            raise PatternError(
                f"pattern {text!r} contains {_describe(bad)}, "
                "which is not allowed in a path"
            )
        if not raw.isprintable():
            bad = next(c for c in raw if not c.isprintable())
            raise PatternError(
                f"pattern {text!r} contains {_describe(bad)}, "
                "which is not allowed in a path"
            )
        if "%" in raw:
            if _BAD_PERCENT.search(raw):
                raise PatternError(
                    f"pattern {text!r} has a '%' not followed by two hex digits "
                    f"in segment {raw!r}"
                )
            try:
                raw = unquote(raw, errors="strict")
            except UnicodeDecodeError:
                raise PatternError(
                    f"pattern {text!r} has percent-escapes that are not UTF-8 "
                    f"in segment {raw!r}"
                ) from None
        segments.append(Literal(raw))
    return PathPattern(text, tuple(segments))


def _parse_param(text: str, raw: str, seen: set[str]) -> Param:
    opens = raw.count("{")
    closes = raw.count("}")
    if opens != closes:
        which = (
            "'{' without a closing '}'"
            if opens > closes
            else "'}' without an opening '{'"
        )
        raise PatternError(
            f"pattern {text!r} has an unbalanced brace: {which} in segment {raw!r}"
        )
    if opens == 1 and raw.index("}") < raw.index("{"):
        raise PatternError(
            f"pattern {text!r} has an unbalanced brace: '}}' before '{{' "
            f"in segment {raw!r}"
        )
    if opens > 1:
        raise PatternError(
            f"pattern {text!r} has more than one pair of braces in segment {raw!r}"
        )
    if raw[0] != "{" or raw[-1] != "}":
        raise PatternError(
            f"pattern {text!r}: a parameter must be a whole segment, got {raw!r}"
        )
    name = raw[1:-1]
    if not name:
        raise PatternError(f"pattern {text!r} has an empty parameter name '{{}}'")
    if not _NAME.match(name):
        raise PatternError(
            f"pattern {text!r} has an invalid parameter name {name!r} "
            "(must be an identifier: letters, digits, '_', not starting with a digit)"
        )
    if name in seen:
        raise PatternError(f"pattern {text!r} has a duplicate parameter name {name!r}")
    seen.add(name)
    return Param(name)


METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def validate_method(method: str) -> str:
    """
    Return ``method`` upper-cased if the gateway routes it.

    :raises ValueError: naming the bad method and the allowed ones.
    """
    if isinstance(method, str):
        upper = method.upper()
        if upper in METHODS:
            return upper
    allowed = ", ".join(sorted(METHODS))
    raise ValueError(f"unsupported method {method!r} (expected one of {allowed})")
