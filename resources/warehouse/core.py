"""The Postgres warehouse: engine, migrations, and the guarded bulk upsert (the one merge every write uses).

The warehouse is the only writer. The bulk path stages a DataFrame with COPY into a temporary table and
merges it with one `INSERT ... ON CONFLICT ... DO UPDATE ... WHERE <incoming is newer>`, so an old backfill
never overwrites newer state and a re-run changes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd
import psycopg
import psycopg.copy
from pydantic import Field, PrivateAttr
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    Table,
    create_engine,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from resources.textsafe import dumps_jsonb, escape_text
from resources.warehouse.migrations import apply_migrations, pending_migrations

ENTITY_KEY = ("account_id", "id")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
# The tables of the schema a warehouse works in (the first of its search path), partitions left out.
_SCHEMA_TABLES = text(
    "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace "
    "AND relkind IN ('r', 'p') AND NOT relispartition"
)


class WarehouseError(RuntimeError):
    """A warehouse operation failed; the message names the table and the offending record."""


def resolve_warehouse_url() -> str:
    """WAREHOUSE_URL from the environment, or a clear error."""
    url = os.environ.get("WAREHOUSE_URL")
    if not url:
        raise WarehouseError(
            "WAREHOUSE_URL is not set; run through `klaviyo-pipeline` (which starts an embedded Postgres) "
            "or export WAREHOUSE_URL=postgresql+psycopg://user@host:5432/db"
        )
    return url


def normalize_url(url: str) -> str:
    """Use psycopg 3 for the warehouse whatever the URL's scheme says."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, schema: str = "public") -> Engine:
    """A SQLAlchemy engine on psycopg 3 whose sessions use `schema` first in the search path."""
    if not _IDENT.match(schema):
        raise WarehouseError(f"invalid schema name {schema!r}")
    connect_args = {"options": f"-csearch_path={schema},public"} if schema != "public" else {}
    return create_engine(normalize_url(url), pool_pre_ping=True, connect_args=connect_args)


@dataclass(frozen=True)
class UpsertCounts:
    """What a guarded upsert did: rows inserted, updated, and skipped (unchanged, older, or repeated)."""

    inserted: int = 0
    updated: int = 0
    skipped: int = 0

    def __add__(self, other: UpsertCounts) -> UpsertCounts:
        return UpsertCounts(
            self.inserted + other.inserted, self.updated + other.updated, self.skipped + other.skipped
        )

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.skipped


class Warehouse(dg.ConfigurableResource):
    """The Postgres warehouse (SQLAlchemy 2 + psycopg 3)."""

    url: str = Field(description="SQLAlchemy URL of the warehouse, e.g. postgresql+psycopg://user@host/db")
    schema_name: str = Field(default="public", description="Schema holding the warehouse tables.")

    _engine: Engine | None = PrivateAttr(default=None)
    _tables: dict[str, Table] = PrivateAttr(default_factory=dict)
    _reflected_all: bool = PrivateAttr(default=False)
    _migrated: bool = PrivateAttr(default=False)
    _partitions: set[str] = PrivateAttr(default_factory=set)
    _partitioned: dict[str, bool] = PrivateAttr(default_factory=dict)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.url, self.schema_name)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def migrate(self) -> list[str]:
        """Create the schema if needed and apply pending migrations."""
        if self.schema_name != "public":
            with self.engine.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{self.schema_name}"'))
        return apply_migrations(self.engine)

    def ensure_migrated(self) -> None:
        """Apply pending migrations once per process: the CLI, the code location when it loads, and each run's
        first step call it; sensor ticks and asset checks only `require_migrated`."""
        if not self._migrated:
            self.migrate()
            self._migrated = True

    def require_migrated(self) -> None:
        """Refuse, with a clear error, a warehouse whose migrations are behind this code; never runs DDL (for
        sensor ticks and asset checks). Checked once per process."""
        if self._migrated:
            return
        pending = pending_migrations(self.engine)
        if pending:
            raise WarehouseError(
                f"the warehouse lacks migrations {', '.join(pending)}: run `klaviyo-pipeline migrate` (or any "
                "sync) first"
            )
        self._migrated = True

    def table(self, name: str, conn: Connection | None = None) -> Table:
        """The reflected table (cached). Pass the connection in use: reflecting on another one would wait
        behind locks this transaction holds (e.g. a partition it just created).

        The first call reflects every table of the schema at once (partitions left out): SQLAlchemy's bulk
        reflection asks the catalogue a few questions for all of them, where reflecting tables one by one asks
        several for each; a run touches most of them. A table made later is reflected alone."""
        if name not in self._tables:
            if not _IDENT.match(name):
                raise WarehouseError(f"invalid table name {name!r}")
            with contextlib.ExitStack() as stack:
                bind = conn if conn is not None else stack.enter_context(self.engine.connect())
                if not self._reflected_all:
                    self._reflected_all = True
                    metadata = MetaData()
                    metadata.reflect(bind, only=bind.execute(_SCHEMA_TABLES).scalars().all())
                    for table in metadata.tables.values():
                        self._tables.setdefault(table.name, table)
                if name not in self._tables:
                    self._tables[name] = Table(name, MetaData(), autoload_with=bind)
        return self._tables[name]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction: everything done on the connection commits together or not at all."""
        with self.engine.begin() as conn:
            yield conn

    def upsert_frame(
        self,
        conn: Connection,
        table: str,
        frame: pd.DataFrame,
        key: Sequence[str] = ENTITY_KEY,
        guard: str | None = "updated_date",
        changed_only: bool = False,
    ) -> UpsertCounts:
        """Stage `frame` with COPY and merge it into `table`, never letting older rows overwrite newer.

        A row is written when it is new, when its `guard` timestamp is newer than the stored one, or when
        the timestamps are equal and the content differs; soft-deleted rows come back to life. Rows repeated
        within the frame keep the newest copy. With `changed_only` (figures read again, e.g. report
        statistics, whose guard is the read time) a row is written only when its content differs and its
        guard is not older than the stored one.

        A large frame (no key repeated) is merged in chunks of up to UPSERT_CHUNK rows, all in the caller's
        transaction: while Postgres stages and merges one chunk, this thread formats the next. The first
        chunks are smaller, so that Postgres starts merging early (see `_chunk_bounds`).
        """
        if frame.empty:
            return UpsertCounts()
        target = self.table(table, conn)
        _check_columns(table, target, frame)
        repeated = bool(frame.duplicated(subset=list(key)).any())
        stage = _temp_stage(conn, table)
        if repeated or len(frame) < 2 * UPSERT_CHUNK:
            self._copy_rows(conn, stage, target, frame)
            return self._merge(conn, table, stage, frame, key, guard, changed_only, repeated=repeated)

        columns = f"{stage} ({', '.join(frame.columns)})"

        def stage_and_merge(chunk: pd.DataFrame, data: bytes) -> UpsertCounts:
            conn.exec_driver_sql(f"TRUNCATE {stage}")
            _copy_data(conn, columns, data)
            return self._merge(conn, table, stage, chunk, key, guard, changed_only, repeated=False)

        counts = UpsertCounts()
        format_conn = self.engine.raw_connection()  # adapters only: it never sends a statement
        try:
            # The executor's exit waits for the chunk under way, so `conn` is never left in use by it.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="klaviyo-merge") as merger:
                under_way: Future | None = None
                for start, stop in _chunk_bounds(len(frame)):
                    chunk = frame.iloc[start:stop]
                    data = _format_copy(format_conn, target, chunk)
                    if under_way is not None:
                        counts += under_way.result()
                    under_way = merger.submit(stage_and_merge, chunk, data)
                counts += under_way.result()
        finally:
            format_conn.close()
        return counts

    def _merge(
        self,
        conn: Connection,
        table: str,
        stage: str,
        frame: pd.DataFrame,
        key: Sequence[str],
        guard: str | None,
        changed_only: bool,
        *,
        repeated: bool,
    ) -> UpsertCounts:
        """Merge the rows of `frame`, already copied into the table `stage`, into `table`. `repeated`: whether
        a key occurs twice in the frame (the caller has worked it out)."""
        target = self.table(table, conn)
        columns = list(frame.columns)
        col_list = ", ".join(columns)
        key_list = ", ".join(key)
        bookkeeping = {"updated_at", "last_synced_at", "deleted_at", "created_at"}
        data_cols = [c for c in columns if c not in key and c not in bookkeeping]
        sets = [f"{c} = excluded.{c}" for c in data_cols]
        sets += ["updated_at = now()", "last_synced_at = now()"]
        if "deleted_at" in target.c and "deleted_at" not in columns:
            sets.append("deleted_at = NULL")
        compared = [c for c in data_cols if not (changed_only and c == guard)]
        differs = (
            f"ROW({', '.join('t.' + c for c in compared)}) IS DISTINCT FROM "
            f"ROW({', '.join('excluded.' + c for c in compared)})"
            if compared
            else "false"
        )
        conditions = []
        if "deleted_at" in target.c:
            conditions.append("t.deleted_at IS NOT NULL")
        if guard and changed_only:
            conditions.append(f"((t.{guard} IS NULL OR excluded.{guard} >= t.{guard}) AND {differs})")
        elif guard:
            conditions += [
                f"(t.{guard} IS NULL AND excluded.{guard} IS NOT NULL)",
                f"excluded.{guard} > t.{guard}",
                f"(excluded.{guard} IS NOT DISTINCT FROM t.{guard} AND {differs})",
            ]
        else:
            conditions.append(differs)
        order = f"{key_list}, {guard} DESC NULLS LAST" if guard else key_list
        extra_cols = (
            ", last_synced_at" if "last_synced_at" in target.c and "last_synced_at" not in columns else ""
        )
        extra_vals = ", now()" if extra_cols else ""
        # Repeated keys in one statement would make ON CONFLICT fail: keep the newest copy of each.
        staged_sql = (
            f"SELECT DISTINCT ON ({key_list}) {col_list} FROM {stage} ORDER BY {order}"
            if repeated
            else f"SELECT {col_list} FROM {stage}"
        )
        merge = f"""
                INSERT INTO {table} AS t ({col_list}{extra_cols})
                SELECT {col_list}{extra_vals} FROM staged
                ON CONFLICT ({key_list}) DO UPDATE SET {", ".join(sets)}
                WHERE {" OR ".join(conditions)}
        """
        if not self._is_partitioned(conn, table):
            inserted_expr = "xmax = 0"
        elif "created_at" in target.c and "created_at" not in columns:
            # A partitioned table cannot return xmax; a row inserted now carries this transaction's now()
            # (partitioned tables are loaded one statement per transaction).
            inserted_expr = "t.created_at = now()"
        else:
            raise WarehouseError(
                f"{table}: a partitioned table needs a defaulted created_at to count its inserts"
            )
        sql = f"""
            WITH staged AS ({staged_sql}), written AS ({merge} RETURNING ({inserted_expr}) AS inserted)
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted),
                   (SELECT count(*) FROM {stage})
            FROM written
        """
        inserted, updated, staged = conn.exec_driver_sql(sql).one()
        return UpsertCounts(inserted, updated, staged - inserted - updated)

    def pipelined_upserts(
        self,
        table: str,
        key: Sequence[str] = ENTITY_KEY,
        guard: str | None = "updated_date",
        month_partitions_on: str | None = None,
    ) -> PipelinedUpserts:
        """Upsert a stream of frames into `table`, each in its own transaction and in order: while Postgres loads
        one batch (in the background), the caller transforms and formats the next, so Python's work overlaps
        Postgres's. A first load is copied straight in; see `PipelinedUpserts`.
        Use as a context manager: leaving the block waits for every batch and raises the first error."""
        return PipelinedUpserts(self, table, key, guard, month_partitions_on)

    def ensure_month_partitions(
        self, conn: Connection, table: str, months: Iterable[tuple[int, int]]
    ) -> list[str]:
        """Create the monthly range partitions of `table` for these (year, month) pairs (see `_months`)."""
        created = []
        for year, month in months:
            name = f"{table}_y{year:04d}m{month:02d}"
            if name in self._partitions:
                continue
            if conn.execute(text("SELECT to_regclass(:n) IS NOT NULL"), {"n": name}).scalar_one():
                self._partitions.add(name)  # committed already: safe to remember
                continue
            start = dt.date(year, month, 1)
            end = dt.date(year + (month == 12), month % 12 + 1, 1)
            # Serialize creators of the same partition (concurrent runs); IF NOT EXISTS makes it idempotent.
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:n))"), {"n": name})
            conn.exec_driver_sql(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                f"FOR VALUES FROM ('{start.isoformat()}T00:00:00+00:00') TO ('{end.isoformat()}T00:00:00+00:00')"
            )
            created.append(name)  # not remembered: this transaction may still roll back
        return created

    def _is_partitioned(self, conn: Connection, table: str) -> bool:
        if table not in self._partitioned:
            kind = conn.execute(
                text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
            ).scalar()
            self._partitioned[table] = kind == "p"
        return self._partitioned[table]

    @staticmethod
    def _copy_rows(conn: Connection, table: str, target: Table, frame: pd.DataFrame) -> None:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN") as copy:
            _write_rows(copy, target, frame)


class PipelinedUpserts:
    """See `Warehouse.pipelined_upserts`. `submit` a frame; `counts` holds the sum once finished.

    The caller's thread formats each batch into COPY data (Python's work); one background thread sends it and
    merges it (Postgres's work, during which that thread holds no GIL), one transaction per batch, in order.
    A first load goes straight in: COPY into the table itself, no stage, no merge, until a batch meets a key
    already stored (a unique violation, rolled back to a savepoint); from then on batches are staged and
    merged with the guard."""

    def __init__(
        self,
        warehouse: Warehouse,
        table: str,
        key: Sequence[str],
        guard: str | None,
        month_partitions_on: str | None,
    ):
        self.warehouse, self.table, self.key, self.guard = warehouse, table, tuple(key), guard
        self.month_partitions_on = month_partitions_on
        self.counts = UpsertCounts()
        self._target = warehouse.table(table)
        self._format_conn = warehouse.engine.raw_connection()  # adapters only: it never sends a statement
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="klaviyo-write")
        self._pending: list[Future] = []
        self._direct = True

    def submit(self, frame: pd.DataFrame) -> None:
        """Queue a frame; raises the first error of an earlier batch. At most DEPTH batches wait."""
        if frame.empty:
            return
        _check_columns(self.table, self._target, frame)
        if "last_synced_at" in self._target.c and "last_synced_at" not in frame.columns:
            frame = frame.assign(last_synced_at=pd.Timestamp.now(tz="UTC"))
        # Everything Python computes happens here, in the caller's thread; the writer thread only talks to
        # Postgres (each time it needs the GIL back while this thread computes, it waits for it).
        months = _months(frame[self.month_partitions_on]) if self.month_partitions_on else []
        repeated = bool(frame.duplicated(subset=list(self.key)).any())
        data = self._format(frame)
        while len(self._pending) >= DEPTH:
            self._pending.pop(0).result()
        self._pending.append(self._writer.submit(self._write, frame, data, months, repeated))

    def _format(self, frame: pd.DataFrame) -> bytes:
        return _format_copy(self._format_conn, self._target, frame)

    def _write(self, frame: pd.DataFrame, data: bytes, months: list[tuple[int, int]], repeated: bool) -> None:
        columns = ", ".join(frame.columns)
        with self.warehouse.transaction() as conn:
            # A batch's commit need not wait for its WAL to reach disk: the stream's final, synchronous commit
            # (the watermark's) flushes it all, and a batch lost in a server crash is read again on the rerun
            # (the watermark has not moved). Nothing becomes inconsistent either way.
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            if months:
                self.warehouse.ensure_month_partitions(conn, self.table, months)
            if self._direct and not repeated:
                try:
                    with conn.begin_nested():
                        _copy_data(conn, f"{self.table} ({columns})", data)
                    self.counts += UpsertCounts(inserted=len(frame))
                    return
                except psycopg.errors.UniqueViolation:
                    self._direct = False  # rows already stored: stage and merge from now on
            stage = _temp_stage(conn, self.table)
            _copy_data(conn, f"{stage} ({columns})", data)
            self.counts += self.warehouse._merge(
                conn, self.table, stage, frame, self.key, self.guard, False, repeated=repeated
            )

    def __enter__(self) -> PipelinedUpserts:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self.finish()
        finally:
            self.close()

    def finish(self) -> None:
        """Wait for every batch; raises the first error."""
        while self._pending:
            self._pending.pop(0).result()

    def close(self) -> None:
        for pending in self._pending:
            pending.cancel()
        self._writer.shutdown(wait=True)  # a batch under way finishes (or rolls back) its own transaction
        self._format_conn.close()


DEPTH = 2  # formatted batches waiting for the writer (memory stays bounded)
UPSERT_CHUNK = 50_000  # rows per stage-and-merge step of a large upsert_frame
CHUNK = 1 << 20


def _chunk_bounds(rows: int) -> list[tuple[int, int]]:
    """(start, stop) of the chunks a large upsert merges: a fifth of UPSERT_CHUNK, then two fifths (each formatted
    while Postgres merges the one before, which takes about twice as long), then UPSERT_CHUNK at a time."""
    bounds, start = [], 0
    for size in (UPSERT_CHUNK // 5, 2 * UPSERT_CHUNK // 5):
        if start < rows:
            bounds.append((start, min(start + size, rows)))
            start += size
    bounds += [(s, min(s + UPSERT_CHUNK, rows)) for s in range(start, rows, UPSERT_CHUNK)]
    return bounds


def _months(stamps: pd.Series) -> list[tuple[int, int]]:
    """The (year, month) pairs these timestamps fall in, in order."""
    stamps = stamps.dropna()
    keys = (stamps.dt.year * 12 + stamps.dt.month - 1).unique()
    return [(int(k) // 12, int(k) % 12 + 1) for k in sorted(keys)]


def _check_columns(table: str, target: Table, frame: pd.DataFrame) -> None:
    unknown = [c for c in frame.columns if c not in target.c]
    if unknown:
        raise WarehouseError(f"{table}: no such columns {unknown}")


def _temp_stage(conn: Connection, table: str) -> str:
    """An empty temporary table shaped like `table`, dropped when the transaction ends; its name."""
    stage = f"_stage_{table}"
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    conn.exec_driver_sql(f"TRUNCATE {stage}")
    return stage


def _write_rows(copy: psycopg.Copy, target: Table, frame: pd.DataFrame) -> None:
    """The frame's rows into a COPY, converted column by column for `target`'s types."""
    arrays = [_column_values(series, target.c[name].type) for name, series in frame.items()]
    for row in zip(*arrays, strict=True):
        copy.write_row(row)


def _format_copy(adapt_conn: Any, target: Table, frame: pd.DataFrame) -> bytes:
    """The frame's rows as COPY text data for `target`, formatted with `adapt_conn`'s adapters (a DBAPI
    connection; nothing is sent on it)."""
    buffer = io.BytesIO()
    with (
        adapt_conn.driver_connection.cursor() as cur,
        psycopg.Copy(cur, binary=False, writer=psycopg.copy.FileWriter(buffer)) as copy,
    ):
        _write_rows(copy, target, frame)
    return buffer.getvalue()


def _copy_data(conn: Connection, target: str, data: bytes) -> None:
    """COPY already formatted text-format data into `target` ("table (columns)")."""
    raw = conn.connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {target} FROM STDIN") as copy:
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            copy.write(view[start : start + CHUNK])


def _column_values(series: pd.Series, column_type: Any) -> list:
    """A column as plain Python values for COPY: missing values become None, text is NUL-escaped, JSON is
    serialized (NUL-escaped too). Converted per column, not per value, for speed."""
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return [None if v is pd.NaT or v is None else v for v in series.dt.to_pydatetime().tolist()]
    if isinstance(column_type, JSONB):
        return [None if v is None else v if isinstance(v, str) else dumps_jsonb(v) for v in series.tolist()]
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        return [
            escape_text(v)
            if isinstance(v, str)
            else None
            if v is None or (isinstance(v, float) and v != v)
            else v
            for v in series.tolist()
        ]
    if series.hasnans:
        return series.astype(object).where(series.notna(), None).tolist()
    return series.tolist()


def ensure_database(admin_uri: str, name: str, private: bool = False) -> None:
    """Create a database if missing. A private one (Dagster's) only admits its owner and superusers, so the
    warehouse's BI role cannot even connect to it."""
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
        if private:
            conn.execute(f'REVOKE CONNECT, TEMPORARY ON DATABASE "{name}" FROM PUBLIC')
