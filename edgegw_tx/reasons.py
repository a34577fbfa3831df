"""
The reason phrase of every status line the gateway writes, in one table.

twisted.web's own table lacks 422, 429 and others (it would send "Unknown
Status"), and Python's ``http.HTTPStatus`` still names a few codes as RFC 7231
did before Python 3.13; RFC 9110 renamed them, and a client (or a person
reading ``curl -i``) sees the current names whatever Python runs the gateway.
"""

from __future__ import annotations

from http import HTTPStatus

__all__ = ["UNKNOWN", "reason_phrase"]

# RFC 9110's names where Python before 3.13 keeps the older ones.
RFC_9110: dict[int, str] = {
    413: "Content Too Large",
    414: "URI Too Long",
    416: "Range Not Satisfiable",
    422: "Unprocessable Content",
}
UNKNOWN = "Unknown Status"  # a code no RFC names (a handler may answer any 200-599)


def reason_phrase(status: int) -> bytes:
    """The reason phrase for ``status`` as status-line bytes: RFC 9110's name, or ``Unknown Status``."""
    phrase = RFC_9110.get(status)
    if phrase is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = UNKNOWN
    return phrase.encode("ascii")
