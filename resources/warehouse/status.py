"""`klaviyo_sync_status` and `klaviyo_sync_runs`: the state of each entity's sync and one row per run.

Success is written on the caller's connection, in the same transaction as the data; start and failure are
written in their own transactions so they survive the data's rollback.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text

UTC = dt.UTC


@dataclass
class RunRecord:
    """What one materialization did, for `klaviyo_sync_runs`."""

    account_id: str
    entity: str
    run_id: str | None
    partition_key: str | None
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    full_refresh: bool
    started_at: dt.datetime
    records_read: int = 0
    records_rejected: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_skipped: int = 0
    api_calls: int = 0
    retries: int = 0
    throttled: int = 0
    throttled_seconds: float = 0.0
    watermark: dt.datetime | None = None
    error: str | None = None


_INSERT_RUN = text(
    """INSERT INTO klaviyo_sync_runs (account_id, entity, run_id, partition_key, window_start, window_end,
         full_refresh, status, started_at, finished_at, duration_seconds, records_read, records_rejected,
         rows_inserted, rows_updated, rows_skipped, api_calls, retries, throttled, throttled_seconds, watermark, error)
       VALUES (:account_id, :entity, :run_id, :partition_key, :window_start, :window_end, :full_refresh, :status,
         :started_at, now(), extract(epoch FROM clock_timestamp() - :started_at), :records_read, :records_rejected,
         :rows_inserted, :rows_updated, :rows_skipped, :api_calls, :retries, :throttled, :throttled_seconds,
         :watermark, :error)"""
)


def _run_params(run: RunRecord, status: str) -> dict:
    params = dict(vars(run))
    params["status"] = status
    return params


def watermark(conn: Connection | Engine, account_id: str, entity: str) -> dt.datetime | None:
    sql = text("SELECT watermark FROM klaviyo_sync_status WHERE account_id = :a AND entity = :e")
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return c.execute(sql, {"a": account_id, "e": entity}).scalar()
    return conn.execute(sql, {"a": account_id, "e": entity}).scalar()


def note_account(engine: Engine, account_id: str, timezone: str, name: str | None) -> None:
    """Record the account a sync reads (klaviyo_accounts): its time zone and declared name, kept current."""
    with engine.begin() as conn:
        conn.execute(
            text(
                """INSERT INTO klaviyo_accounts (account_id, name, timezone) VALUES (:a, :n, :tz)
                   ON CONFLICT (account_id) DO UPDATE
                   SET name = coalesce(EXCLUDED.name, klaviyo_accounts.name), timezone = EXCLUDED.timezone,
                       last_seen_at = now()"""
            ),
            {"a": account_id, "n": name, "tz": timezone},
        )


def mark_started(engine: Engine, account_id: str, entity: str, run_id: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                """INSERT INTO klaviyo_sync_status (account_id, entity, status, last_started_at, run_id)
                   VALUES (:a, :e, 'running', now(), :r)
                   ON CONFLICT (account_id, entity) DO UPDATE
                   SET status = 'running', last_started_at = now(), run_id = :r, updated_at = now()"""
            ),
            {"a": account_id, "e": entity, "r": run_id},
        )


def record_success(conn: Connection, run: RunRecord) -> None:
    """Status and run row for a successful load, on the data's own transaction. The watermark only rises."""
    conn.execute(
        text(
            """INSERT INTO klaviyo_sync_status AS s (account_id, entity, status, last_started_at, last_finished_at,
                 last_success_at, watermark, rows_inserted, rows_updated, rows_skipped, last_error, run_id)
               VALUES (:account_id, :entity, 'success', :started_at, now(), now(), :watermark, :rows_inserted,
                 :rows_updated, :rows_skipped, NULL, :run_id)
               ON CONFLICT (account_id, entity) DO UPDATE SET
                 status = 'success', last_finished_at = now(), last_success_at = now(),
                 watermark = GREATEST(s.watermark, excluded.watermark),
                 rows_inserted = excluded.rows_inserted, rows_updated = excluded.rows_updated,
                 rows_skipped = excluded.rows_skipped, last_error = NULL, run_id = excluded.run_id,
                 updated_at = now()"""
        ),
        _run_params(run, "success"),
    )
    conn.execute(_INSERT_RUN, _run_params(run, "success"))


def record_failure(engine: Engine, run: RunRecord) -> None:
    """Status and run row for a failed load; the watermark stays where it was."""
    with engine.begin() as conn:
        conn.execute(
            text(
                """INSERT INTO klaviyo_sync_status AS s (account_id, entity, status, last_started_at,
                     last_finished_at, last_error, run_id)
                   VALUES (:account_id, :entity, 'failed', :started_at, now(), :error, :run_id)
                   ON CONFLICT (account_id, entity) DO UPDATE SET
                     status = 'failed', last_finished_at = now(), last_error = excluded.last_error,
                     run_id = excluded.run_id, updated_at = now()"""
            ),
            _run_params(run, "failed"),
        )
        conn.execute(_INSERT_RUN, _run_params(run, "failed"))


def mark_run_interrupted(engine: Engine, run_id: str, error: str) -> int:
    """Mark every entity still 'running' under a Dagster run that ended as interrupted: the run stopped while
    the sync was under way (its process died or was killed, or the run was canceled), since a sync that fails
    on its own records 'failed' itself. The watermark stays where the last complete window left it."""
    with engine.begin() as conn:
        return conn.execute(
            text(
                """UPDATE klaviyo_sync_status SET status = 'interrupted', last_finished_at = now(),
                     last_error = :err, updated_at = now()
                   WHERE run_id = :r AND status = 'running'"""
            ),
            {"r": run_id, "err": error},
        ).rowcount
