"""Persistence of endpoints, services, their bindings and API keys."""

from edgegw_tx.store.sqlite import Conflict, LastAdminKey, Missing, NoFreeUid, ServiceInUse, SQLiteStore

__all__ = ["Conflict", "LastAdminKey", "Missing", "NoFreeUid", "ServiceInUse", "SQLiteStore"]
