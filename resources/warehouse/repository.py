"""The seed's repository: the documented Python access to one entity table (reads, soft deletes, creates),
whose upsert is the pipeline's own guarded merge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import DateTime, Text, cast, func, insert, literal, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from resources.textsafe import dumps_jsonb, escape_text, unescape_json, unescape_text
from resources.warehouse.core import ENTITY_KEY, Warehouse, WarehouseError


class Repository:
    """Generic data access for one entity table (the seed's repository operations)."""

    def __init__(self, warehouse: Warehouse, table: str, account_id: str | None = None):
        self.warehouse = warehouse
        self.name = table
        self.table = warehouse.table(table)
        self.account_id = account_id

    # -- reads -----------------------------------------------------------------------------------
    def _select(self, include_deleted: bool = False):
        query = select(self.table)
        if self.account_id is not None:
            query = query.where(self.table.c.account_id == self.account_id)
        if not include_deleted and "deleted_at" in self.table.c:
            query = query.where(self.table.c.deleted_at.is_(None))
        return query

    def _fetch(self, query) -> list[dict[str, Any]]:
        with self.warehouse.engine.connect() as conn:
            return [_decode_row(row._mapping) for row in conn.execute(query)]

    def find_by_id(self, record_id: str, include_deleted: bool = False) -> dict[str, Any] | None:
        rows = self._fetch(self._select(include_deleted).where(self.table.c.id == escape_text(record_id)))
        return rows[0] if rows else None

    def find_by_name(self, name: str) -> list[dict[str, Any]]:
        return self._fetch(
            self._select().where(self.table.c.name == escape_text(name)).order_by(self.table.c.id)
        )

    def find_by_status(self, status: str) -> list[dict[str, Any]]:
        return self._fetch(self._select().where(self.table.c.status == status).order_by(self.table.c.id))

    def find_by_date_range(
        self, start: dt.datetime, end: dt.datetime, column: str = "created_date"
    ) -> list[dict[str, Any]]:
        """Rows whose `column` falls in [start, end)."""
        col = self.table.c[column]
        return self._fetch(self._select().where(col >= start, col < end).order_by(col, self.table.c.id))

    def find_all(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        query = self._select().order_by(self.table.c.account_id, self.table.c.id).limit(limit).offset(offset)
        return self._fetch(query)

    def find_updated_since(self, since: dt.datetime) -> list[dict[str, Any]]:
        col = self.table.c.updated_date
        return self._fetch(self._select().where(col > since).order_by(col, self.table.c.id))

    def latest_update_timestamp(self) -> dt.datetime | None:
        """The newest Klaviyo `updated_date` of the table's rows (the account's, when the repository has one)."""
        query = select(func.max(self.table.c.updated_date))
        if self.account_id is not None:
            query = query.where(self.table.c.account_id == self.account_id)
        with self.warehouse.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    def count(self, include_deleted: bool = False) -> int:
        query = select(func.count()).select_from(self._select(include_deleted).subquery())
        with self.warehouse.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    # -- writes ----------------------------------------------------------------------------------
    def _checked(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record with the repository's account, refused when it names a column the table lacks."""
        values = dict(record)
        if self.account_id is not None:
            values.setdefault("account_id", self.account_id)
        unknown = [k for k in values if k not in self.table.c]
        if unknown:
            raise WarehouseError(f"{self.name}: no such columns {unknown} (record id {values.get('id')!r})")
        return values

    def _encode(self, record: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _encode_value(self.table.c[k].type, v) for k, v in self._checked(record).items()}

    def create(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Insert one record; fails if it exists."""
        return self.create_batch([record])[0]

    def create_batch(self, records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Insert records in one transaction: all or nothing; an error names the failing record's id."""
        created = []
        with self.warehouse.transaction() as conn:
            for record in records:
                values = self._encode(record)
                try:
                    with conn.begin_nested():
                        row = conn.execute(insert(self.table).values(**values).returning(self.table)).one()
                except IntegrityError as exc:
                    raise WarehouseError(
                        f"{self.name}: record id {record.get('id')!r} violates a constraint; batch rolled back: "
                        f"{exc.orig}"
                    ) from exc
                created.append(_decode_row(row._mapping))
        return created

    def create_or_update(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Insert, or update through the pipeline's one guarded merge (`Warehouse.upsert_frame`): a row is written
        when it is new, newer (`updated_date`), or equally new with other content; an older copy never wins."""
        values = self._checked(record)
        frame = pd.DataFrame([values])
        for name, column in self.table.c.items():
            if name in frame and isinstance(column.type, DateTime) and frame[name].notna().any():
                frame[name] = pd.to_datetime(frame[name], utc=True)
        guard = "updated_date" if "updated_date" in self.table.c else None
        with self.warehouse.transaction() as conn:
            self.warehouse.upsert_frame(conn, self.name, frame, key=ENTITY_KEY, guard=guard)
            row = conn.execute(
                select(self.table).where(
                    self.table.c.account_id == values["account_id"],
                    self.table.c.id == escape_text(values["id"]),
                )
            ).one()
        return _decode_row(row._mapping)

    def delete(self, record_id: str) -> bool:
        """Soft delete: set deleted_at; returns whether a live row was marked."""
        stmt = update(self.table).where(
            self.table.c.id == escape_text(record_id), self.table.c.deleted_at.is_(None)
        )
        if self.account_id is not None:
            stmt = stmt.where(self.table.c.account_id == self.account_id)
        with self.warehouse.transaction() as conn:
            return conn.execute(stmt.values(deleted_at=func.now(), updated_at=func.now())).rowcount > 0


def _encode_value(column_type: Any, value: Any) -> Any:
    if isinstance(column_type, JSONB):
        # Serialize here (NULs escaped) so the JSONB type does not serialize the value again.
        return None if value is None else cast(literal(dumps_jsonb(value), Text), JSONB)
    if isinstance(value, str):
        return escape_text(value)
    return value


def _decode_row(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: unescape_text(v) if isinstance(v, str) else unescape_json(v) if isinstance(v, dict | list) else v
        for k, v in mapping.items()
    }
