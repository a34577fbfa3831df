"""
Failures that cross planes and map to an HTTP status.

The process plane raises them, the data plane turns them into responses; keeping
them here lets both sides agree without importing each other.
"""


class GatewayError(Exception):
    """A request could not be served; ``status`` is what the client gets."""

    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class WorkerCrashed(GatewayError):
    """The worker serving the request exited before answering."""

    status = 502


class ProtocolViolation(GatewayError):
    """The worker broke the frame protocol and was killed."""

    status = 502


class RequestTimedOut(GatewayError):
    """The worker did not answer within the endpoint's timeout."""

    status = 504


class Overloaded(GatewayError):
    """No worker is free and the queue is full."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after


class PoolStopped(GatewayError):
    """The endpoint's workers are stopping or stopped."""

    status = 503


class InvalidResponse(GatewayError):
    """The handler's ``response`` frame could not be turned into HTTP."""

    status = 502
