"""Persistence of endpoints and API keys."""

from edgegw_tx.store.sqlite import Conflict, SQLiteStore

__all__ = ["Conflict", "SQLiteStore"]
