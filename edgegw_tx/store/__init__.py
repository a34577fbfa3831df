"""Persistence of endpoints, services, their bindings and API keys."""

from edgegw_tx.store.sqlite import Conflict, Missing, ServiceInUse, SQLiteStore

__all__ = ["Conflict", "Missing", "ServiceInUse", "SQLiteStore"]
