"""
The service plane: connectors the gateway owns and the broker that answers
the workers' ``call`` frames (docs/ipc.md, "Service calls").

Public face::

    from edgegw_tx.services import (
        SERVICE_TYPES, ConfigError, validate_config, mask, merge_secrets,
        ServiceError, ServiceRegistry,
    )

* ``config`` — per-type config validation, defaults, secret masking.
* ``registry`` — ``ServiceRegistry``: connectors by service id, bindings, the
  ``call_handler`` for ``WorkerPool``, ``test``, ``close``.
* ``sql`` — ``?`` placeholder translation and row value conversion.
* ``sqlite``, ``postgres``, ``redis``, ``storage`` — one connector each.
* ``errors`` — ``ServiceError`` and the error kinds; ``args`` — argument checks.

Nothing here imports the other planes.
"""

from .config import SERVICE_TYPES, ConfigError, mask, merge_secrets, validate_config
from .errors import ServiceError
from .registry import ServiceRegistry

__all__ = [
    "SERVICE_TYPES",
    "ConfigError",
    "ServiceError",
    "ServiceRegistry",
    "mask",
    "merge_secrets",
    "validate_config",
]
