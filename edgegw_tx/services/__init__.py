"""
The service plane: connectors the gateway owns and the broker that answers
the workers' C{call} frames (docs/ipc.md, "Service calls").

Public face::

    from edgegw_tx.services import (
        SERVICE_TYPES, ConfigError, validate_config, mask, merge_secrets,
        ServiceError, ServiceRegistry,
    )

* L{config} — per-type config validation, defaults, secret masking.
* L{registry} — L{ServiceRegistry}: connectors by service id, bindings, the
  C{call_handler} for C{WorkerPool}, C{test}, C{close}.
* L{sql} — C{?} placeholder translation and row value conversion.
* L{sqlite}, L{postgres}, L{redis}, L{storage} — one connector each.
* L{errors} — L{ServiceError} and the error kinds; L{args} — argument checks.

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
