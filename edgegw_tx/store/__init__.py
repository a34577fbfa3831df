"""
Persistence of what the control plane manages: the interface every store
provides (``IStore``), what stores fail with, and the SQLite store.
"""

from edgegw_tx.store.errors import (
    Conflict,
    InUse,
    LastAdminKey,
    MigrationFailed,
    Missing,
    NoFreeUid,
    RouteClash,
    ServiceInUse,
    StoreRefused,
    StoreTooNew,
)
from edgegw_tx.store.interface import IStore
from edgegw_tx.store.sqlite import SQLiteStore

__all__ = [
    "Conflict",
    "IStore",
    "InUse",
    "LastAdminKey",
    "MigrationFailed",
    "Missing",
    "NoFreeUid",
    "RouteClash",
    "SQLiteStore",
    "ServiceInUse",
    "StoreRefused",
    "StoreTooNew",
]
