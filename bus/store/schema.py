"""Which upgrade steps a store's tables need, from the version they record (see
``bus.store.sql`` for the steps and the upgrade path)."""

from __future__ import annotations

from collections.abc import Sequence

from bus.store import sql
from bus.store.base import StoreError


def check_version(found: int | None, migrations: Sequence[Sequence[str]], where: str) -> list[str]:
    """The statements that take tables at version ``found`` (None: no tables yet) to
    ``sql.VERSION``, in order; StoreError if they are newer than this bus knows."""
    if len(migrations) != sql.VERSION:  # a step appended without raising VERSION, or so
        raise AssertionError("bus.store.sql: one migration step per schema version")
    current = 0 if found is None else found
    if current > sql.VERSION:
        raise StoreError(
            f"the bus tables in {where} are at schema version {current}, newer than this "
            f"bus knows ({sql.VERSION}): upgrade the bus package in every service first"
        )
    return [statement for step in migrations[current:] for statement in step]
