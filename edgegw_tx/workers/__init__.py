"""
The process plane: worker processes speaking length-prefixed JSON frames on
their stdin/stdout, grouped in pools (spec/IPC.md, docs/internals.md).
"""

from .framing import DEFAULT_MAX_FRAME, FrameError, FrameProtocol, encode_frame
from .pool import WorkerPool
from .process import WorkerProcess, unbound_service

__all__ = [
    "DEFAULT_MAX_FRAME",
    "FrameError",
    "FrameProtocol",
    "WorkerPool",
    "WorkerProcess",
    "encode_frame",
    "unbound_service",
]
