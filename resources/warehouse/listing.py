"""Full id listings in flat memory: the ids a listing finds go, batch by batch, into a temporary table on one
connection (each batch committed as it comes), and what the listing implies is then written by joins against
it. Nothing holds the listing in Python, however many ids it has (a segment's millions of members, every
profile of an account)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, text

from resources.textsafe import escape_text, unescape_text
from resources.warehouse.core import Warehouse

LISTED = "_listed_ids"  # the temporary table: one column, `id`


class IdListing:
    """A listing's ids in a temporary table (use as a context manager; `reset` starts another listing)."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse
        self.conn: Connection | None = None
        self.added = 0

    def __enter__(self) -> IdListing:
        self.conn = self.warehouse.engine.connect()
        self.conn.exec_driver_sql(f'CREATE TEMP TABLE IF NOT EXISTS {LISTED} (id text COLLATE "C" NOT NULL)')
        # Indexed: a table just loaded may have no statistics yet (autovacuum analyzes it later), and the
        # planner then joins each of its rows against the whole listing; with the index, each is one probe.
        self.conn.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {LISTED}_id ON {LISTED} (id)")
        self.conn.commit()
        self.reset()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.conn.rollback()
            self.conn.exec_driver_sql(f"DROP TABLE IF EXISTS {LISTED}")
            self.conn.commit()
        finally:
            self.conn.close()

    def reset(self) -> None:
        """Empty the table for another listing."""
        self.conn.exec_driver_sql(f"TRUNCATE {LISTED}")
        self.conn.commit()
        self.added = 0

    def add(self, ids: Iterable[str]) -> None:
        """Copy a batch of listed ids in and commit it."""
        raw = self.conn.connection.driver_connection
        n = 0
        with raw.cursor() as cur, cur.copy(f"COPY {LISTED} (id) FROM STDIN") as copy:
            for i in ids:
                copy.write_row((escape_text(i),))
                n += 1
        self.conn.commit()
        self.added += n

    def distinct(self) -> int:
        """Different ids listed (a listing may return one twice across pages)."""
        return self.conn.execute(text(f"SELECT count(DISTINCT id) FROM {LISTED}")).scalar_one()

    def _analyzed(self) -> Connection:
        # Temporary tables are never analyzed automatically: without statistics the planner would guess the
        # anti-joins below badly for a listing of millions.
        self.conn.exec_driver_sql(f"ANALYZE {LISTED}")
        self.conn.commit()
        return self.conn

    # -- what a complete listing implies ------------------------------------------------------------------
    def mark_unlisted_deleted(
        self, table: str, account_id: str, listed_since: dt.datetime, max_share: float
    ) -> tuple[list[str], int]:
        """Set `deleted_at` on the account's live rows of `table` whose id was not listed and that were last
        synced before the listing began, in one transaction; (their ids, the live rows before). Nothing is
        marked (ShareExceeded) if that would be more than `max_share` of the live rows."""
        conn = self._analyzed()
        with conn.begin():
            live = conn.execute(
                text(f"SELECT count(*) FROM {_ident(table)} WHERE account_id = :a AND deleted_at IS NULL"),
                {"a": account_id},
            ).scalar_one()
            gone = conn.execute(
                text(
                    f"""UPDATE {_ident(table)} t SET deleted_at = now(), updated_at = now()
                        WHERE t.account_id = :a AND t.deleted_at IS NULL
                          AND (t.last_synced_at IS NULL OR t.last_synced_at < :began)
                          AND NOT EXISTS (SELECT 1 FROM {LISTED} l WHERE l.id = t.id)
                        RETURNING t.id"""
                ),
                {"a": account_id, "began": listed_since},
            ).scalars()
            ids = [unescape_text(i) for i in gone]
            if ids and len(ids) > max_share * live:
                raise ShareExceeded(len(ids), live)
        return ids, live

    def settle_members(
        self, table: str, group_column: str, account_id: str, group_id: str, listed_since: dt.datetime
    ) -> tuple[int, int, int]:
        """What a complete listing of one list's or segment's members implies, in one transaction: members it
        found that the table lacks are inserted (join time unknown until a read returns them), members that
        had left and are listed again are members again, and members it did not find that were last written
        before the listing began get `left_at` (the listing's start). Returns (found, back, left)."""
        t, g = _ident(table), _ident(group_column)
        params = {"a": account_id, "g": escape_text(group_id), "began": listed_since}
        conn = self._analyzed()
        with conn.begin():
            found = conn.execute(
                text(
                    f"""INSERT INTO {t} (account_id, {g}, profile_id, last_synced_at)
                        SELECT DISTINCT :a, :g, l.id, now() FROM {LISTED} l
                        WHERE NOT EXISTS (
                          SELECT 1 FROM {t} m WHERE m.account_id = :a AND m.{g} = :g AND m.profile_id = l.id)
                        ON CONFLICT DO NOTHING"""
                ),
                params,
            ).rowcount
            back = conn.execute(
                text(
                    f"""UPDATE {t} m SET left_at = NULL, updated_at = now(), last_synced_at = now()
                        WHERE m.account_id = :a AND m.{g} = :g AND m.left_at IS NOT NULL
                          AND EXISTS (SELECT 1 FROM {LISTED} l WHERE l.id = m.profile_id)"""
                ),
                params,
            ).rowcount
            left = conn.execute(
                text(
                    f"""UPDATE {t} m SET left_at = :began, updated_at = now()
                        WHERE m.account_id = :a AND m.{g} = :g AND m.left_at IS NULL
                          AND (m.last_synced_at IS NULL OR m.last_synced_at < :began)
                          AND NOT EXISTS (SELECT 1 FROM {LISTED} l WHERE l.id = m.profile_id)"""
                ),
                params,
            ).rowcount
        return found, back, left


class ShareExceeded(RuntimeError):
    """A listing would mark more than the allowed share of the live rows (more likely a short listing than a
    mass deletion); nothing was marked."""

    def __init__(self, marked: int, live: int):
        self.marked, self.live = marked, live
        super().__init__(f"the listing would mark {marked} of {live} live rows")


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"not an identifier: {name!r}")
    return name
