"""
The request target as routing reads it: the one normal form of a request
path, and what a valid ``Host`` is.

The path's normal form is what the route table matches and what the handler
receives as ``path``, so a path cannot mean one thing to routing and another
to the handler (or to a proxy in front that compares raw paths).

The rules (docs/routing.md, "How paths are normalised"):

* A percent-escape of an unreserved character (RFC 3986: ``A-Z a-z 0-9 - . _
  ~``) is decoded, once: ``/%73ecret`` is ``/secret``, ``/%2573`` is ``/%2573``.
* Every other escape is kept as data, with upper-case hex digits: ``%2f``
  becomes ``%2F`` and never splits a segment.
* ``%00`` and a malformed escape (``%4``, ``%zz``) are refused (``BadPath``).
* Characters outside ASCII (only the twisted.web front lets them through; llhttp
  refuses them) are percent-encoded as UTF-8.
* A dot-segment (``.`` or ``..``, also when spelled ``%2E``) is refused: the
  gateway neither resolves it (a proxy that compares raw paths would not see
  ``/public/../secret`` as ``/secret``) nor routes it as a literal.

The common path (no ``%``, no ``/.``, ASCII) is returned as it is, after three
scans of a short string.

A ``Host`` value must be ``host [":" port]`` of RFC 3986 (RFC 9110 §7.2: 400
otherwise): a name of unreserved characters, sub-delims and escapes, or a
bracketed IP literal, so ``a.example:80@b.example`` or ``a.example, b.example``
cannot be read as one host here and as another by a proxy.
"""

from __future__ import annotations

import re
import string

__all__ = ["BadPath", "UNRESERVED", "normal_path", "valid_host"]

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
"""RFC 3986's unreserved characters: the only escapes decoded."""

# "2F" → None (kept), "73" → "s" (decoded); keys in upper case.
_DECODE = {f"{code:02X}": chr(code) if chr(code) in UNRESERVED else None for code in range(256)}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_HOST = re.compile(
    rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*(?::[0-9]*)?"
    rb"|\[[0-9A-Fa-f:.]+\](?::[0-9]*)?"
).fullmatch
_MALFORMED = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadPath(ValueError):
    """The request path has no normal form; the message names the problem (400)."""


def _escape(match: re.Match[str]) -> str:
    """One ``%XX``: the unreserved character, or the escape in upper case."""
    digits = match.group(1).upper()
    char = _DECODE[digits]
    if char is not None:
        return char
    if digits == "00":
        raise BadPath("the path contains %00 (NUL)")
    return "%" + digits


def _encode_non_ascii(path: str) -> str:
    """Percent-encode (UTF-8) every character outside ASCII."""
    return "".join(
        char if char < "\x80" else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "replace"))
        for char in path
    )


def normal_path(path: str) -> str:
    """
    The normal form of ``path`` (an origin-form path, no query), as the module
    docstring says.

    :raises BadPath: ``%00``, a malformed escape or a dot-segment.
    """
    if "%" in path:
        bad = _MALFORMED.search(path)
        if bad is not None:
            where = bad.start()
            raise BadPath(f"malformed percent-escape {path[where:where + 3]!r} in the path")
        path = _ESCAPE.sub(_escape, path)
    if not path.isascii():
        path = _encode_non_ascii(path)
    if "/." in path:
        for segment in path.split("/"):
            if segment == "." or segment == "..":
                raise BadPath(f"the path contains the dot-segment {segment!r}")
    return path


def valid_host(value: bytes) -> bool:
    """Whether ``value`` (a ``Host`` field value) is ``host [":" port]``."""
    return _HOST(value) is not None
