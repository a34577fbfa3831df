"""Errors of the management API, each carrying the HTTP status it answers with."""

from typing import Any


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, **extra: Any) -> None:
        """``extra``: fields the error's JSON body carries beside the message (``field``, counts)."""
        super().__init__(message)
        self.message = message
        self.extra = extra


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    """A request body, or an uploaded bundle once inflated, over its cap."""

    status = 413


class Unprocessable(ApiError):
    status = 422


class WorkersFailed(ApiError):
    """The endpoint's workers could not be started: the handler's fault, not ours."""

    status = 502


class BuildUnavailable(ApiError):
    """The build plane cannot run at all (no cargo, no SDK): the operator's to fix."""

    status = 503


class TooManyRequests(ApiError):
    """Too many failed authentications from one address; ``Retry-After`` says when to retry."""

    status = 429


class Starting(ApiError):
    """The gateway is still loading its store and restarting its endpoints."""

    status = 503


class PreconditionFailed(ApiError):
    """An ``If-Match`` that no longer matches: someone else changed the record first."""

    status = 412


class StoreDown(ApiError):
    """The store cannot be reached; ``Retry-After`` says when to try again."""

    status = 503
