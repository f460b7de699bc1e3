"""Named warehouse reads and maintenance writes for the assets, checks, sensors and the CLI: the only place
besides the merge, the ledger and the status tables where SQL touches the warehouse.

Table and column names come from the catalogue and the statistics families (never from input); values are
always bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, text

from resources.textsafe import escape_text, unescape_text


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not an identifier: {name!r}")
    return name


# -- soft deletes ---------------------------------------------------------------------------------------------
def live_rows(conn: Connection, table: str, account_id: str) -> int:
    """Rows of an account not soft-deleted."""
    return conn.execute(
        text(f"SELECT count(*) FROM {_ident(table)} WHERE account_id = :a AND deleted_at IS NULL"),
        {"a": account_id},
    ).scalar_one()


def mark_unlisted_deleted(
    conn: Connection, table: str, account_id: str, listed_ids: Sequence[str], listed_since: dt.datetime
) -> list[str]:
    """Set `deleted_at` on the account's live rows whose id is not in `listed_ids` and that were last synced
    before the listing began (`listed_since`); their ids."""
    gone = conn.execute(
        text(
            f"""UPDATE {_ident(table)} SET deleted_at = now(), updated_at = now()
                WHERE account_id = :a AND deleted_at IS NULL AND NOT (id = ANY(:ids))
                  AND (last_synced_at IS NULL OR last_synced_at < :began)
                RETURNING id"""
        ),
        {"a": account_id, "ids": [escape_text(i) for i in listed_ids], "began": listed_since},
    )
    return [unescape_text(i) for i in gone.scalars().all()]


def mark_owned_deleted(
    conn: Connection, table: str, owner_column: str, account_id: str, owners: list[str]
) -> int:
    """Soft-delete the live rows that belong to these owners (e.g. a deleted campaign's messages)."""
    return conn.execute(
        text(
            f"""UPDATE {_ident(table)} SET deleted_at = now(), updated_at = now()
                WHERE account_id = :a AND deleted_at IS NULL AND {_ident(owner_column)} = ANY(:owners)"""
        ),
        {"a": account_id, "owners": [escape_text(o) for o in owners]},
    ).rowcount


def mark_owned_deleted_returning(
    conn: Connection, table: str, owner_column: str, account_id: str, owners: Sequence[str]
) -> list[str]:
    """Soft-delete the live rows that belong to these owners, as `mark_owned_deleted`; the ids marked (for what
    hangs off them in turn, e.g. a removed flow step's messages)."""
    if not owners:
        return []
    gone = conn.execute(
        text(
            f"""UPDATE {_ident(table)} SET deleted_at = now(), updated_at = now()
                WHERE account_id = :a AND deleted_at IS NULL AND {_ident(owner_column)} = ANY(:owners)
                RETURNING id"""
        ),
        {"a": account_id, "owners": [escape_text(o) for o in owners]},
    )
    return [unescape_text(i) for i in gone.scalars().all()]


def mark_unlisted_owned_deleted(
    conn: Connection,
    table: str,
    owner_column: str,
    key: Sequence[str],
    account_id: str,
    owners: Sequence[str],
    listed: Sequence[Sequence[str]],
    listed_since: dt.datetime | None = None,
) -> list[tuple[str, ...]]:
    """Set `deleted_at` on the live rows of these owners (e.g. the steps of the flows just read) whose key (less
    account_id) is not among `listed` (tuples in the order of `key` less account_id); with `listed_since`, only
    rows last synced before it (a row a concurrent sync wrote meanwhile is left alone). The keys marked."""
    if not owners:
        return []
    columns = [_ident(c) for c in key if c != "account_id"]
    params: dict = {"a": account_id, "owners": [escape_text(o) for o in owners]}
    for n in range(len(columns)):
        params[f"k{n}"] = [escape_text(row[n]) for row in listed]
    arrays = ", ".join(f"CAST(:k{n} AS text[])" for n in range(len(columns)))
    same = " AND ".join(f"l.c{n} = t.{c}" for n, c in enumerate(columns))
    since = ""
    if listed_since is not None:
        since = " AND (t.last_synced_at IS NULL OR t.last_synced_at < :began)"
        params["began"] = listed_since
    gone = conn.execute(
        text(
            f"""UPDATE {_ident(table)} AS t SET deleted_at = now(), updated_at = now()
                WHERE t.account_id = :a AND t.deleted_at IS NULL AND t.{_ident(owner_column)} = ANY(:owners)
                  AND NOT EXISTS (SELECT 1 FROM unnest({arrays}) AS l({", ".join(f"c{n}" for n in range(len(columns)))})
                                  WHERE {same}){since}
                RETURNING {", ".join(f"t.{c}" for c in columns)}"""
        ),
        params,
    )
    return [tuple(unescape_text(v) for v in row) for row in gone.all()]


def rows_at_version(
    conn: Connection, table: str, guard: str, account_id: str, versions: dict[str, dt.datetime | None]
) -> set[str]:
    """Of these ids, those whose stored row holds exactly this version (its `guard` value): the records a load
    just wrote or confirmed, not those an older copy in the batch could not overwrite."""
    if not versions:
        return set()
    ids = list(versions)
    found = conn.execute(
        text(
            f"""SELECT v.id FROM unnest(CAST(:ids AS text[]), CAST(:stamps AS timestamptz[])) AS v(id, stamp)
                JOIN {_ident(table)} t ON t.account_id = :a AND t.id = v.id
                WHERE t.{_ident(guard)} IS NOT DISTINCT FROM v.stamp"""
        ),
        {"a": account_id, "ids": [escape_text(i) for i in ids], "stamps": [versions[i] for i in ids]},
    )
    return {unescape_text(i) for i in found.scalars().all()}


@dataclass(frozen=True)
class ParentRow:
    """A row a nested entity is read under: its id, the record of the windowed entity it belongs to, and that
    record's cursor value."""

    id: str
    root_id: str
    root_stamp: dt.datetime | None


def changed_parents(
    conn: Connection,
    account_id: str,
    root_table: str,
    root_cursor: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    table: str | None = None,
    via: str | None = None,
    only: tuple[str, Sequence[str]] | None = None,
) -> list[ParentRow]:
    """The live rows to read a nested entity under: the records of `root_table` whose `root_cursor` lies in
    [start, end) (None: unbounded; a root without a cursor: every live record, with no stamp), or, with `table`
    and `via`, the live rows of `table` whose `via` column names one of them; `only` keeps the rows whose column
    holds one of the values or is NULL. Ordered by id."""
    params: dict = {"a": account_id}
    if root_cursor is None:
        start = end = None
    stamp = f"r.{_ident(root_cursor)}" if root_cursor is not None else "CAST(NULL AS timestamptz)"
    bounds = ""
    if start is not None:
        bounds += f" AND r.{_ident(root_cursor)} >= :start"
        params["start"] = start
    if end is not None:
        bounds += f" AND r.{_ident(root_cursor)} < :end"
        params["end"] = end
    if table is None or table == root_table:
        sql = f"""SELECT r.id, r.id AS root_id, {stamp} AS stamp FROM {_ident(root_table)} r
                  WHERE r.account_id = :a AND r.deleted_at IS NULL{bounds} ORDER BY r.id"""
    else:
        keep = ""
        if only is not None:
            keep = f" AND (p.{_ident(only[0])} IS NULL OR p.{_ident(only[0])} = ANY(:only))"
            params["only"] = list(only[1])
        sql = f"""SELECT p.id, r.id AS root_id, {stamp} AS stamp FROM {_ident(table)} p
                  JOIN {_ident(root_table)} r ON r.account_id = p.account_id AND r.id = p.{_ident(via or "")}
                  WHERE p.account_id = :a AND p.deleted_at IS NULL AND r.deleted_at IS NULL{bounds}{keep}
                  ORDER BY p.id"""
    rows = conn.execute(text(sql), params).all()
    return [ParentRow(unescape_text(r.id), unescape_text(r.root_id), r.stamp) for r in rows]


# -- checks ---------------------------------------------------------------------------------------------------
def repeated_ids(conn: Connection, table: str) -> int:
    """How many rows repeat an (account_id, id) already present (for tables whose key has more columns)."""
    return conn.execute(
        text(f"SELECT count(*) - count(DISTINCT (account_id, id)) FROM {_ident(table)}")
    ).scalar_one()


def null_counts(conn: Connection, table: str, columns: Sequence[str], live_only: bool) -> dict[str, int]:
    """Rows where each column is NULL (live rows only, for soft-deleting tables)."""
    live = " AND deleted_at IS NULL" if live_only else ""
    return {
        c: conn.execute(
            text(f"SELECT count(*) FROM {_ident(table)} WHERE {_ident(c)} IS NULL{live}")
        ).scalar_one()
        for c in columns
    }


def latest_sync_run(conn: Connection, entity: str):
    """The latest row of klaviyo_sync_runs for an entity (None when it never ran)."""
    return conn.execute(
        text(
            """SELECT records_read, records_rejected, rows_inserted + rows_updated + rows_skipped AS landed,
                      window_start, window_end, status
               FROM klaviyo_sync_runs WHERE entity = :e ORDER BY finished_at DESC, id DESC LIMIT 1"""
        ),
        {"e": entity},
    ).one_or_none()


def unknown_references(
    conn: Connection, table: str, column: str, parent_table: str, live_only: bool = False, limit: int = 20
) -> list[str]:
    """Values of `table.column` (not NULL) with no row of that id in `parent_table` for the same account."""
    live = " AND s.deleted_at IS NULL" if live_only else ""
    return (
        conn.execute(
            text(
                f"""SELECT DISTINCT s.{_ident(column)} FROM {_ident(table)} s
                    WHERE s.{_ident(column)} IS NOT NULL{live} AND NOT EXISTS (
                      SELECT 1 FROM {_ident(parent_table)} p
                      WHERE p.account_id = s.account_id AND p.id = s.{_ident(column)})
                    ORDER BY 1 LIMIT :n"""
            ),
            {"n": limit},
        )
        .scalars()
        .all()
    )


def updated_in_future(
    conn: Connection, table: str, column: str, margin: dt.timedelta, limit: int = 20
) -> list[str]:
    """Live rows whose Klaviyo update time lies more than `margin` after now (a clock or parsing fault)."""
    return (
        conn.execute(
            text(
                f"""SELECT id FROM {_ident(table)} WHERE deleted_at IS NULL AND {_ident(column)} > now() + :m
                    ORDER BY id LIMIT :n"""
            ),
            {"m": margin, "n": limit},
        )
        .scalars()
        .all()
    )


def watermark_regressions(conn: Connection, entity: str) -> list:
    """Successful runs of an entity whose watermark is lower than an earlier successful run's."""
    return conn.execute(
        text(
            """SELECT account_id, run_id, watermark, previous FROM (
                 SELECT account_id, run_id, watermark,
                        max(watermark) OVER (PARTITION BY account_id ORDER BY finished_at, id
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous
                 FROM klaviyo_sync_runs WHERE entity = :e AND status = 'success') r
               WHERE watermark < previous ORDER BY account_id, run_id LIMIT 20"""
        ),
        {"e": entity},
    ).all()


def rows_where_any(conn: Connection, table: str, conditions: Sequence[tuple[str, str, float]]) -> int:
    """Rows where any (column, operator, bound) holds, e.g. ("open_rate", ">", 1)."""
    if not conditions:
        return 0
    allowed = {"<", ">"}
    parts = []
    params = {}
    for n, (column, op, bound) in enumerate(conditions):
        if op not in allowed:
            raise ValueError(op)
        parts.append(f"{_ident(column)} {op} :b{n}")
        params[f"b{n}"] = bound
    return conn.execute(
        text(f"SELECT count(*) FROM {_ident(table)} WHERE {' OR '.join(parts)}"), params
    ).scalar_one()


def coverage_gaps(conn: Connection, family: str) -> list:
    """Per account: the first and last day a statistics family covers, and the days missing between."""
    return conn.execute(
        text(
            """SELECT account_id, min(day) AS first, max(day) AS last, count(*) AS days,
                      (max(day) - min(day) + 1) - count(*) AS missing
               FROM klaviyo_report_coverage WHERE family = :f GROUP BY account_id"""
        ),
        {"f": family},
    ).all()


def sent_campaigns_without_figures(conn: Connection, report: str) -> list[str]:
    """Campaigns sent (status Sent) between the first campaign report call's timeframe and a day before the
    latest call that have no statistics row."""
    return (
        conn.execute(
            text(
                """WITH calls AS (
                       SELECT account_id, min(timeframe_start) AS first, max(called_at) AS last
                       FROM klaviyo_report_calls WHERE report = :r AND status = 'ok' GROUP BY account_id)
                   SELECT c.id FROM klaviyo_campaigns c JOIN calls ON calls.account_id = c.account_id
                   WHERE c.deleted_at IS NULL AND c.status = 'Sent'
                     AND c.send_time >= calls.first AND c.send_time < calls.last - interval '1 day'
                     AND NOT EXISTS (SELECT 1 FROM klaviyo_campaign_stats s
                                     WHERE s.account_id = c.account_id AND s.campaign_id = c.id)
                   ORDER BY c.id LIMIT 20"""
            ),
            {"r": report},
        )
        .scalars()
        .all()
    )


def latest_run_rejections(conn: Connection, report: str):
    """Results rejected, calls and details of a report's latest run."""
    return conn.execute(
        text(
            """WITH latest AS (SELECT run_id FROM klaviyo_report_calls WHERE report = :r
                              ORDER BY called_at DESC, id DESC LIMIT 1)
               SELECT coalesce(sum(rows_rejected), 0) AS rejected, count(*) AS calls,
                      string_agg(detail, '; ') FILTER (WHERE rows_rejected > 0) AS detail
               FROM klaviyo_report_calls WHERE report = :r
                 AND run_id IS NOT DISTINCT FROM (SELECT run_id FROM latest)"""
        ),
        {"r": report},
    ).one()


# -- sensors and the CLI --------------------------------------------------------------------------------------
def row_count(conn: Connection, table: str) -> int:
    """Rows of a table or view."""
    return conn.execute(text(f"SELECT count(*) FROM {_ident(table)}")).scalar_one()


def has_rows(conn: Connection, table: str, account_id: str | None = None) -> bool:
    """Whether the table has a row (of that account, when one is named)."""
    if account_id is None:
        return conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {_ident(table)})")).scalar_one()
    sql = f"SELECT EXISTS (SELECT 1 FROM {_ident(table)} WHERE account_id = :a)"
    return conn.execute(text(sql), {"a": account_id}).scalar_one()


@dataclass(frozen=True)
class EntityStatus:
    entity: str
    status: str
    watermark: dt.datetime | None
    last_success_at: dt.datetime | None


def sync_statuses(conn: Connection) -> dict[str, EntityStatus]:
    """Each entity's sync status (every account: the latest)."""
    rows = conn.execute(
        text(
            """SELECT DISTINCT ON (entity) entity, status, watermark, last_success_at FROM klaviyo_sync_status
               ORDER BY entity, updated_at DESC"""
        )
    )
    return {r.entity: EntityStatus(r.entity, r.status, r.watermark, r.last_success_at) for r in rows}


@dataclass(frozen=True)
class AccountStatus:
    account_id: str
    succeeded: int
    failed: tuple[str, ...]  # entities whose last sync failed or was interrupted
    last_success_at: dt.datetime | None


def status_by_account(conn: Connection) -> dict[str, AccountStatus]:
    """Each account's entities: how many last synced successfully, which did not, and the latest success."""
    rows = conn.execute(
        text(
            """SELECT account_id, count(*) FILTER (WHERE status = 'success') AS ok,
                      coalesce(array_agg(entity ORDER BY entity) FILTER (WHERE status IN ('failed', 'interrupted')),
                               '{}') AS bad,
                      max(last_success_at) AS last_success_at
               FROM klaviyo_sync_status GROUP BY account_id"""
        )
    )
    return {r.account_id: AccountStatus(r.account_id, r.ok, tuple(r.bad), r.last_success_at) for r in rows}


def report_requests_on(conn: Connection, day: dt.date) -> int:
    """Report requests counted on a day, every account."""
    return conn.execute(
        text("SELECT coalesce(sum(calls), 0) FROM klaviyo_report_quota WHERE day = :d"), {"d": day}
    ).scalar_one()


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    type: str
    nullable: bool
    comment: str | None


def table_columns(conn: Connection, table: str) -> list[ColumnInfo]:
    """A table's columns in order: type, nullability and the `COMMENT ON COLUMN` text (first in the search path)."""
    rows = conn.execute(
        text(
            """SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, NOT a.attnotnull AS nullable,
                      col_description(a.attrelid, a.attnum) AS comment
               FROM pg_attribute a
               WHERE a.attrelid = to_regclass(:t) AND a.attnum > 0 AND NOT a.attisdropped
               ORDER BY a.attnum"""
        ),
        {"t": _ident(table)},
    ).all()
    return [ColumnInfo(r.name, r.type, r.nullable, r.comment) for r in rows]


def rows_per_day(
    conn: Connection,
    table: str,
    day: str,
    account_id: str,
    first: dt.date,
    last: dt.date,
    utc: bool,
    with_history: bool = False,
) -> dict[dt.date, int]:
    """Live rows of an account per day of column `day` (a timestamp read as a UTC day when `utc`, else a date)
    from `first` to `last`. With `with_history`, rows older than `first` count on `first` (the first daily
    partition holds everything before it)."""
    column = f"({_ident(day)} AT TIME ZONE 'UTC')::date" if utc else _ident(day)
    live = (
        " AND deleted_at IS NULL" if any(c.name == "deleted_at" for c in table_columns(conn, table)) else ""
    )
    since = "" if with_history else f" AND {column} >= :first"
    rows = conn.execute(
        text(
            f"SELECT greatest({column}, :first) AS d, count(*) FROM {_ident(table)} "
            f"WHERE account_id = :a AND {column} <= :last{since}{live} GROUP BY 1"
        ),
        {"a": account_id, "first": first, "last": last},
    )
    return dict(rows.tuples().all())


def qualified_name(conn: Connection, table: str) -> str:
    """schema.table of a table as the search path finds it."""
    return conn.execute(
        text(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid = to_regclass(:t)"
        ),
        {"t": _ident(table)},
    ).scalar_one()
