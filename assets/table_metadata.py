"""Dagster's table metadata for an asset's Postgres table: its columns (types, nullability, the column comments
the migrations write) as `dagster/column_schema`, and its `dagster/table_name`."""

from __future__ import annotations

import dagster as dg

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
