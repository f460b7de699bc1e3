"""What hangs off a row of an entity table, from the catalogue: the resources included with it (a flow's steps),
the rows derived from its attributes (a campaign's audiences) and the nested entities read under it (a step's
messages, a form's versions). A row soft-deleted takes what hangs off it along, all the way down."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection

from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES
from resources.catalogue import CATALOGUE, nested_under
from resources.warehouse import queries as q


@dataclass(frozen=True)
class Dependent:
    """A table whose rows belong to a row of another: the column naming that row, and whether its rows have an
    `id` of their own (anything can hang off them in turn)."""

    table: str
    owner_column: str
    has_ids: bool = True


def dependents(table: str) -> list[Dependent]:
    """The tables whose rows belong to a row of `table`."""
    out: list[Dependent] = []
    for entry in CATALOGUE.values():
        if entry.table == table:
            out += [
                Dependent(INCLUDED_SHAPES[t].table, INCLUDED_SHAPES[t].owner_column)
                for t in entry.included_tables
            ]
            out += [
                Dependent(DERIVED_TABLES[d].table, DERIVED_TABLES[d].owner_column, has_ids=False)
                for d in entry.derived_tables
            ]
        if entry.parent is not None and entry.parent.table == table:
            out.append(Dependent(entry.table, entry.parent.column, has_ids="id" in entry.key))
    return out


def loaded_with(entity: str) -> list[str]:
    """The tables a run of the entity's job fills: its own, its included and derived tables, and those of the
    nested entities read under it (e.g. flows: klaviyo_flows, klaviyo_flow_actions, klaviyo_flow_messages)."""
    entry = CATALOGUE[entity]
    tables = [entry.table, *(INCLUDED_SHAPES[t].table for t in entry.included_tables)]
    tables += [DERIVED_TABLES[d].table for d in entry.derived_tables]
    return tables + [CATALOGUE[n].table for n in nested_under(entity)]


def cascade_deleted(conn: Connection, table: str, account_id: str, ids: Sequence[str]) -> dict[str, int]:
    """Soft-delete what hangs off these (just soft-deleted) rows of `table`, and what hangs off that; the rows
    marked per table."""
    marked: dict[str, int] = {}
    if not ids:
        return marked
    for dep in dependents(table):
        if dep.has_ids:
            gone = q.mark_owned_deleted_returning(conn, dep.table, dep.owner_column, account_id, ids)
            counts = {dep.table: len(gone), **cascade_deleted(conn, dep.table, account_id, gone)}
        else:
            counts = {
                dep.table: q.mark_owned_deleted(conn, dep.table, dep.owner_column, account_id, list(ids))
            }
        for name, n in counts.items():
            marked[name] = marked.get(name, 0) + n
    return marked
