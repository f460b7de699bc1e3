"""The Reporting API's bookkeeping in the warehouse: the daily quota ledger every run shares, the calls made,
the days each statistics family covers, and the lookups the statistics need (campaign sends, metrics)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable

from sqlalchemy import Connection, Engine, text

from resources.calendar import UTC_CALENDAR, AccountCalendar
from resources.reports import DAILY_QUOTA, FAMILIES, NOW_MARGIN, Family, ReportCall

UTC = dt.UTC


def campaign_send_days(
    conn: Connection, account_id: str, calendar: AccountCalendar, first: dt.date, last: dt.date
) -> dict[str, dt.date]:
    """The account day each live campaign's send began on, for sends that began in [first, last]: the earliest
    of the campaign's send time and its messages' (a day earlier for a send in recipients' local time, which
    starts in the earliest time zone)."""
    rows = conn.execute(
        text(
            """SELECT c.id, (least(c.send_time, m.first_send)
                             - CASE WHEN m.local THEN interval '1 day' ELSE interval '0' END)
                            AT TIME ZONE :tz AS began
               FROM klaviyo_campaigns c
               LEFT JOIN (SELECT campaign_id, min(send_time) AS first_send, bool_or(send_time_is_local) AS local
                          FROM klaviyo_campaign_messages WHERE account_id = :a AND deleted_at IS NULL
                          GROUP BY campaign_id) m ON m.campaign_id = c.id
               WHERE c.account_id = :a AND c.deleted_at IS NULL
                 AND coalesce(c.send_time, m.first_send) IS NOT NULL"""
        ),
        {"a": account_id, "tz": calendar.timezone},
    ).all()
    return {r.id: r.began.date() for r in rows if first <= r.began.date() <= last}


def days_to_load(
    conn: Connection,
    account_id: str,
    family: Family,
    first: dt.date,
    last: dt.date,
    now: dt.datetime,
    settle_days: int,
    full_refresh: bool = False,
    calendar: AccountCalendar = UTC_CALENDAR,
) -> list[dt.date]:
    """The account's days of [first, last] (never after its today) not yet loaded, or last read before they
    settled: a day is settled once read `settle_days` after it ended (Klaviyo revises attribution for days)."""
    last = min(last, calendar.today(now - NOW_MARGIN))
    if last < first:
        return []
    days = [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]
    if full_refresh:
        return days
    loaded = dict(
        conn.execute(
            text(
                "SELECT day, loaded_at FROM klaviyo_report_coverage"
                " WHERE account_id = :a AND family = :f AND day BETWEEN :s AND :e"
            ),
            {"a": account_id, "f": family.name, "s": first, "e": last},
        ).all()
    )
    settle = dt.timedelta(days=settle_days)

    def settled(day: dt.date) -> bool:
        at = loaded.get(day)
        return at is not None and at >= calendar.end_of(day) + settle

    return [d for d in days if not settled(d)]


def mark_loaded(
    conn: Connection, account_id: str, call: ReportCall, loaded_at: dt.datetime, run_id: str | None
) -> None:
    family = FAMILIES[call.family]
    days = [d for d in call.days if family.earliest is None or d >= family.earliest]
    conn.execute(
        text(
            """INSERT INTO klaviyo_report_coverage (account_id, family, day, loaded_at, run_id)
               SELECT :a, :f, d, :at, :r FROM unnest(CAST(:days AS date[])) AS d
               ON CONFLICT (account_id, family, day) DO UPDATE
               SET loaded_at = GREATEST(klaviyo_report_coverage.loaded_at, excluded.loaded_at),
                   run_id = excluded.run_id"""
        ),
        {"a": account_id, "f": call.family, "days": days, "at": loaded_at, "r": run_id},
    )


class ReportLedger:
    """Report requests per account and the account's calendar day, in Postgres, shared by every run and process.

    A slot is reserved (in its own committed transaction) before each request; requests a call's retries
    added are counted after it. A 429 whose Retry-After runs past the day closes the day for everyone.
    """

    def __init__(
        self,
        engine: Engine,
        account_id: str,
        quota: int = DAILY_QUOTA,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(UTC),
        calendar: AccountCalendar = UTC_CALENDAR,
    ):
        if quota < 1:
            raise ValueError("the daily report quota must be at least 1")
        self.engine = engine
        self.account_id = account_id
        self.quota = quota
        self.clock = clock
        self.calendar = calendar

    def _day(self) -> dt.date:
        return self.calendar.today(self.clock())

    def resets_at(self) -> dt.datetime:
        """When the account's next day (and so a new quota) begins."""
        return self.calendar.end_of(self._day())

    def usage(self) -> tuple[int, bool]:
        """(requests counted today, whether Klaviyo closed the day)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT calls, exhausted_at FROM klaviyo_report_quota WHERE account_id = :a AND day = :d"
                ),
                {"a": self.account_id, "d": self._day()},
            ).one_or_none()
        return (row.calls, row.exhausted_at is not None) if row else (0, False)

    def remaining(self) -> int:
        used, closed = self.usage()
        return 0 if closed else max(0, self.quota - used)

    def reserve(self) -> bool:
        """Take one request of today's quota; False when none is left."""
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    """INSERT INTO klaviyo_report_quota AS q (account_id, day, calls, quota)
                       VALUES (:a, :d, 1, :q)
                       ON CONFLICT (account_id, day) DO UPDATE
                       SET calls = q.calls + 1, quota = excluded.quota, updated_at = now()
                       WHERE q.calls < excluded.quota AND q.exhausted_at IS NULL
                       RETURNING calls"""
                ),
                {"a": self.account_id, "d": self._day(), "q": self.quota},
            ).one_or_none()
        return row is not None

    def add(self, requests: int) -> None:
        """Count requests beyond the reserved one (retries)."""
        if requests <= 0:
            return
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    """UPDATE klaviyo_report_quota SET calls = calls + :n, updated_at = now()
                       WHERE account_id = :a AND day = :d"""
                ),
                {"a": self.account_id, "d": self._day(), "n": requests},
            )

    def close_day(self) -> None:
        """Klaviyo said the daily quota is spent: no more calls today, from any run."""
        with self.engine.begin() as conn:
            conn.execute(
                text(
                    """INSERT INTO klaviyo_report_quota AS q (account_id, day, calls, quota, exhausted_at)
                       VALUES (:a, :d, 0, :q, now())
                       ON CONFLICT (account_id, day) DO UPDATE SET exhausted_at = now(), updated_at = now()"""
                ),
                {"a": self.account_id, "d": self._day(), "q": self.quota},
            )

    def log_call(
        self,
        call: ReportCall,
        status: str,
        *,
        requests: int = 1,
        rows: int = 0,
        rejected: int = 0,
        metric_id: str | None = None,
        run_id: str | None = None,
        detail: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        sql = text(
            """INSERT INTO klaviyo_report_calls (account_id, report, timeframe_start, timeframe_end,
                 conversion_metric_id, status, requests, rows_written, rows_rejected, run_id, detail, called_at)
               VALUES (:a, :rep, :s, :e, :m, :st, :n, :rows, :rejected, :run, :detail, :at)"""
        )
        params = {
            "a": self.account_id,
            "rep": FAMILIES[call.family].report,
            "s": call.start,
            "e": call.end,
            "m": metric_id,
            "st": status,
            "n": requests,
            "rows": rows,
            "rejected": rejected,
            "run": run_id,
            "detail": detail,
            "at": self.clock(),
        }
        if conn is not None:
            conn.execute(sql, params)
        else:
            with self.engine.begin() as c:
                c.execute(sql, params)


def metric_ids_by_name(conn: Connection, account_id: str, names: Iterable[str]) -> dict[str, list[str]]:
    """Ids of the live metrics of these names in klaviyo_metrics, oldest first (Klaviyo lets a name repeat,
    and renames metrics: a name is resolved at run time, never stored as a key)."""
    found: dict[str, list[str]] = {}
    rows = conn.execute(
        text(
            "SELECT name, id FROM klaviyo_metrics WHERE account_id = :a AND name = ANY(:n) AND deleted_at IS NULL"
            " ORDER BY created_date NULLS LAST, id"
        ),
        {"a": account_id, "n": list(names)},
    )
    for name, metric_id in rows:
        found.setdefault(name, []).append(metric_id)
    return found


def resolve_conversion_metric(
    conn: Connection, account_id: str, name: str | None, metric_id: str | None
) -> tuple[str | None, str]:
    """The conversion metric's id and how it was found: an explicit id wins; else the metric named `name` in
    klaviyo_metrics (several of one name: the oldest id, which is stable; names are display text)."""
    if metric_id:
        return metric_id, f"conversion metric {metric_id} (configured id)"
    if not name:
        return None, "no conversion metric configured"
    ids = metric_ids_by_name(conn, account_id, [name]).get(name, [])
    if not ids:
        return (
            None,
            f"no metric named {name!r} in klaviyo_metrics (sync metrics, or set conversion_metric_id)",
        )
    note = f"conversion metric {name!r} = {ids[0]}"
    if len(ids) > 1:
        note += f" (the oldest of {len(ids)} metrics of that name: {', '.join(ids)})"
    return ids[0], note


def refused_metric(conn: Connection, account_id: str, metric_id: str, since: dt.datetime) -> str | None:
    """Klaviyo's detail if it refused this conversion metric since `since` (no call is wasted on it again)."""
    return conn.execute(
        text(
            """SELECT detail FROM klaviyo_report_calls WHERE account_id = :a AND conversion_metric_id = :m
               AND status = 'refused' AND called_at >= :since ORDER BY called_at DESC LIMIT 1"""
        ),
        {"a": account_id, "m": metric_id, "since": since},
    ).scalar()
