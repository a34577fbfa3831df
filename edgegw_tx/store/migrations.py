"""
Numbered migrations, whatever the database.

A migration is a function named ``m<NNNN>_<name>`` that takes a DB-API cursor
and changes the schema one step; its number is read from its name, so it is
written once.  A store keeps the numbers it has applied (a
``schema_migrations`` table: version, name, applied_at) and at start runs the
ones it lacks, in order, all in one transaction.  A store that has a number
the code does not know was written by a newer edgegw and is refused
(``StoreTooNew``); one with a hole in its numbers is refused too, since the
later migrations were written for a schema that had the earlier ones.

This module is the part every store shares: the list's rules, the plan, the
``schema_migrations`` table and the running of a plan.  The migrations are each
database's (``edgegw_tx.store.sqlite_schema``, ``edgegw_tx.store.postgres_schema``),
their tables written once for both (``edgegw_tx.store.schema_ddl``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgegw_tx.store.errors import MigrationFailed, StoreRefused, StoreTooNew

_NAME = re.compile(r"m(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\Z")

#: The table of the migrations a store has applied (both databases).
CREATE_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``apply(cursor)`` runs its statements."""

    version: int
    name: str
    apply: Callable[[Any], None]


def numbered(*functions: Callable[[Any], None]) -> tuple[Migration, ...]:
    """
    The migrations of ``functions``, named ``m0001_…``, ``m0002_…``: numbers
    from 1 with no gap, in order, so that the list itself is the order they run in.
    """
    migrations = []
    for expected, function in enumerate(functions, start=1):
        match = _NAME.match(function.__name__)
        if match is None:
            raise ValueError(f"a migration is named m<NNNN>_<name>, not {function.__name__}")
        version = int(match["version"])
        if version != expected:
            raise ValueError(f"migration {function.__name__} should be number {expected}")
        migrations.append(Migration(version, match["name"], function))
    return tuple(migrations)



def defined_in(namespace: Mapping[str, object]) -> tuple[Migration, ...]:
    """
    The migrations a schema module defines (``defined_in(globals())``): its
    functions named ``m<NNNN>_<name>``, by number, under ``numbered``'s rules;
    a migration written is a migration run, with no list to forget it in.
    """
    functions = [value for name, value in sorted(namespace.items()) if _NAME.match(name) and callable(value)]
    return numbered(*functions)

def plan(where: str, applied: Iterable[int], migrations: Sequence[Migration]) -> list[Migration]:
    """
    Those of ``migrations`` a store that has ``applied`` still needs, in order.
    ``StoreTooNew`` when it has one the code does not know; ``StoreRefused`` when
    it lacks one older than another it has.
    """
    done = set(applied)
    known = {m.version for m in migrations}
    newest = max(known, default=0)
    unknown = done - known
    if unknown:
        raise StoreTooNew(where, max(unknown), newest)
    todo = [m for m in migrations if m.version not in done]
    if todo and done and todo[0].version < max(done):
        raise StoreRefused(
            f"the store {where} has migration {max(done)} but not {todo[0].version}:"
            " it was not written by edgegw's migrations"
        )
    return todo



def record(cursor: Any, migrations: Iterable[Migration], applied_at: str, placeholder: str) -> None:
    """Note ``migrations`` as applied (``placeholder``: the driver's, ``?`` or ``%s``)."""
    values = ", ".join([placeholder] * 3)
    cursor.executemany(
        f"INSERT INTO schema_migrations (version, name, applied_at) VALUES ({values})",
        [(m.version, m.name, applied_at) for m in migrations],
    )


def apply(cursor: Any, where: str, todo: Iterable[Migration], applied_at: str, placeholder: str) -> None:
    """
    Run ``todo`` in order, each noted in ``schema_migrations`` as it is done;
    ``MigrationFailed`` naming the one that fails (the caller's transaction
    then rolls back all of them).
    """
    for migration in todo:
        try:
            migration.apply(cursor)
        except Exception as e:
            raise MigrationFailed(where, migration.version, migration.name, e) from e
        record(cursor, [migration], applied_at, placeholder)
