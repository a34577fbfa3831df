"""
The failure of a service call, as the worker sees it.

A connector raises (or fails its Deferred with) ``ServiceError``; the broker
turns it into the ``error`` of a ``result`` frame, ``{"kind", "message"}``.  The
kinds are the ones docs/ipc.md lists and the Rust SDK maps one to one.
"""

from __future__ import annotations

__all__ = [
    "BAD_REQUEST",
    "DATABASE_ERROR",
    "INTERNAL",
    "KINDS",
    "REDIS_ERROR",
    "SERVICE_UNAVAILABLE",
    "STORAGE_ERROR",
    "ServiceError",
    "bad_request",
    "one_line",
    "unavailable",
]

DATABASE_ERROR = "DatabaseError"
REDIS_ERROR = "RedisError"
STORAGE_ERROR = "StorageError"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
BAD_REQUEST = "BadRequest"
INTERNAL = "Internal"

KINDS = (
    DATABASE_ERROR,
    REDIS_ERROR,
    STORAGE_ERROR,
    SERVICE_UNAVAILABLE,
    BAD_REQUEST,
    INTERNAL,
)


class ServiceError(Exception):
    """
    A service call or a service test failed.

    :ivar kind: one of ``KINDS``.
    :ivar message: what went wrong, for the handler's author.
    """

    def __init__(self, kind: str, message: str):
        if kind not in KINDS:
            raise ValueError(f"unknown service error kind {kind!r}")
        super().__init__(kind, message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def as_error(self) -> dict[str, str]:
        """The ``error`` object of a ``result`` frame."""
        return {"kind": self.kind, "message": self.message}


def bad_request(message: str) -> ServiceError:
    """A malformed call: unknown action, missing or ill-typed argument."""
    return ServiceError(BAD_REQUEST, message)


def unavailable(message: str) -> ServiceError:
    """No such binding, the backend is unreachable, or the call timed out."""
    return ServiceError(SERVICE_UNAVAILABLE, message)


def one_line(text: str) -> str:
    """A backend's (possibly multi-line) message on one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())
