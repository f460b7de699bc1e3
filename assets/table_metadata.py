"""What an asset's materializations say: its Postgres table's columns (types, nullability, the column comments
the migrations write) as `dagster/column_schema` and its `dagster/table_name`; per-partition figures."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import dagster as dg

from assets.partitions import split_key
from resources.warehouse import Warehouse
from resources.warehouse import queries as q


def table_metadata(warehouse: Warehouse, table: str) -> dict:
    with warehouse.engine.connect() as conn:
        columns = q.table_columns(conn, table)
        name = q.qualified_name(conn, table)
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.type,
                description=c.comment,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in columns
        ]
    )
    return {"dagster/column_schema": schema, "dagster/table_name": name}


def partition_metadata(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    keys: Sequence[str],
    window: dict,
    rows_by_day: dict[dt.date, int] | None,
) -> dict:
    """A materialization's metadata, per partition. Dagster writes one event per partition of a run; only what
    is true of each partition goes on each: its rows in the table (`dagster/row_count`, so the plot across
    partitions and runs means something). The run's own figures (rows read and written, API calls, the
    table's schema) cover its whole window: they go once, on the newest partition's event, with
    `figures_cover` saying so. A one-partition run carries both on its one event. `keys`: one account's
    partitions of the run, in order (`rows_by_day` is that account's). Returns the metadata for the
    `MaterializeResult` (what every partition's event would get)."""

    def rows(key: str) -> dict:
        if rows_by_day is None:
            return {}
        return {"dagster/row_count": rows_by_day.get(dt.date.fromisoformat(split_key(key)[1]), 0)}

    if len(context.partition_keys) == 1:
        return {**window, **rows(keys[0])}
    if rows_by_day is not None:
        for key in keys[:-1]:
            context.add_asset_metadata(rows(key), asset_key=asset_key, partition_key=key)
    cover = f"the run's whole window: {keys[0]} .. {keys[-1]} ({len(keys)} partitions)"
    context.add_asset_metadata(
        {**window, **rows(keys[-1]), "figures_cover": cover}, asset_key=asset_key, partition_key=keys[-1]
    )
    return {}


def _canonical(value):
    """A value as plain, ordered data: the same facts give the same text in every process."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, set | frozenset):
        return sorted(map(str, value))
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if callable(value):
        return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def code_version(*facts) -> str:
    """An asset's code version from the declarations it is built from (its catalogue entry, its transform's
    shape, its report family): when one of them changes, Dagster shows the asset's materializations as made by
    older code."""
    text = json.dumps([_canonical(f) for f in facts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
