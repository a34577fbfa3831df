"""
Persistence of what the control plane manages: the interface every store
provides (``IStore``; ``IClusterStore`` for a shared one), what stores fail
with, and the SQLite store (the PostgreSQL one is ``edgegw_tx.store.postgres``;
``edgegw_tx.store.uri`` picks one from ``--store``).
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
    Stale,
    StoreRefused,
    StoreTooNew,
    StoreUnavailable,
)
from edgegw_tx.store.interface import IClusterStore, IStore
from edgegw_tx.store.sqlite import SQLiteStore

__all__ = [
    "Conflict",
    "IClusterStore",
    "IStore",
    "InUse",
    "LastAdminKey",
    "MigrationFailed",
    "Missing",
    "NoFreeUid",
    "RouteClash",
    "SQLiteStore",
    "ServiceInUse",
    "Stale",
    "StoreRefused",
    "StoreTooNew",
    "StoreUnavailable",
]
