"""
The ``auth`` part of a policy: who the client is, told to the handler.

The identity a check verified reaches the handler as request header fields
the gateway sets (``CONSUMER_HEADER``, ``SUBJECT_HEADER``, ``CLAIMS_HEADER``).
A client could send them too, so the dispatcher calls ``strip_identity`` on
every request, with or without a policy: what the handler reads was set by
the gateway or is absent.
"""

from __future__ import annotations

__all__ = ["CLAIMS_HEADER", "CONSUMER_HEADER", "IDENTITY_HEADERS", "SUBJECT_HEADER", "strip_identity"]

CONSUMER_HEADER = "x-edgegw-consumer"
"""The consumer's name (``api_key``), or the token's ``sub`` (``jwt``); rate limits by ``consumer`` read it."""
SUBJECT_HEADER = "x-edgegw-subject"
"""The verified token's ``sub`` claim (``jwt``)."""
CLAIMS_HEADER = "x-edgegw-claims"
"""The verified token's claims as a JSON object (``jwt``)."""
IDENTITY_HEADERS = (CONSUMER_HEADER, SUBJECT_HEADER, CLAIMS_HEADER)
"""Every header field only the gateway may set."""


def strip_identity(headers: dict[str, str]) -> None:
    """Remove the identity fields a client sent (``headers`` has lower-case names)."""
    if CONSUMER_HEADER in headers:
        del headers[CONSUMER_HEADER]
    if SUBJECT_HEADER in headers:
        del headers[SUBJECT_HEADER]
    if CLAIMS_HEADER in headers:
        del headers[CLAIMS_HEADER]
