"""Loading report statistics (no Dagster; the assets are in assets/stats.py): plan the calls for a range of the account's days, spend the shared quota on them
in order (one request a page), upsert each whole response in its own transaction with the days it covered,
defer what does not fit."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from resources.calendar import UTC_CALENDAR, AccountCalendar
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, QuotaExhausted
from resources.reports import (
    FAMILIES,
    ReportCall,
    campaign_keep_until,
    combine_pages,
    plan_calls,
    plan_campaign_calls,
    report_rows,
    request_attributes,
)
from resources.warehouse import UpsertCounts, Warehouse
from resources.warehouse.ledger import (
    ReportLedger,
    campaign_send_days,
    days_to_load,
    mark_loaded,
    refused_metric,
    resolve_conversion_metric,
)

UTC = dt.UTC
REFUSAL_MEMORY = dt.timedelta(days=1)


@dataclass
class StatsRequest:
    """What a statistics materialization asks for."""

    families: list[str]
    first_day: dt.date
    last_day: dt.date
    lookback_days: int = 7
    full_refresh: bool = False
    conversion_metric_name: str | None = "Placed Order"
    conversion_metric_id: str | None = None
    run_id: str | None = None
    campaign_refresh_days: int = 30  # campaigns are read again until this long after their send


class _Deferred(Exception):
    """No quota left for the next page of a call: the call waits, whole, for the next day."""


@dataclass
class FamilyOutcome:
    family: str
    planned: list[ReportCall] = field(default_factory=list)
    made: list[ReportCall] = field(default_factory=list)
    deferred: list[ReportCall] = field(default_factory=list)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    skipped: str | None = None  # why the family was not loaded at all (no metric, metric refused)
    metric_note: str | None = None
    pages: int = 0
    rejected: list[str] = field(default_factory=list)  # results that could not be read


@dataclass
class StatsOutcome:
    account_id: str
    families: dict[str, FamilyOutcome]
    quota_used: int
    quota: int
    quota_exhausted: bool = False
    today: dt.date | None = None  # the account's day the run ran on

    def planned_calls(self) -> int:
        return sum(len(f.planned) for f in self.families.values())


def plan(
    request: StatsRequest,
    warehouse: Warehouse,
    account_id: str,
    now: dt.datetime,
    calendar: AccountCalendar = UTC_CALENDAR,
) -> dict[str, list[ReportCall]]:
    """The calls each family needs for the request (nothing is sent): its unsettled days of the account's
    calendar, plus the lookback's recent days before the last one (attribution settles late). Campaigns: the
    days sends began on that were not read `campaign_refresh_days` after the send (opens and clicks arrive
    for weeks), each call spanning the whole of every send it keeps."""
    first = min(request.first_day, request.last_day - dt.timedelta(days=request.lookback_days))
    today = calendar.today(now)
    calls = {}
    with warehouse.engine.connect() as conn:
        for name in request.families:
            family = FAMILIES[name]
            if name == "campaign":
                since = min(first, today - dt.timedelta(days=request.campaign_refresh_days))
                days = days_to_load(
                    conn, account_id, family, since, request.last_day, now, request.campaign_refresh_days,
                    request.full_refresh, calendar,
                )  # fmt: skip
                sent = set(campaign_send_days(conn, account_id, calendar, since, request.last_day).values())
                calls[name] = plan_campaign_calls([d for d in days if d in sent], today)
                continue
            days = days_to_load(
                conn, account_id, family, first, request.last_day, now, request.lookback_days,
                request.full_refresh, calendar,
            )  # fmt: skip
            calls[name] = plan_calls(family, days)
    return calls


def load_statistics(
    request: StatsRequest,
    client: KlaviyoClient,
    warehouse: Warehouse,
    ledger: ReportLedger,
    log: logging.Logger | None = None,
    now: dt.datetime | None = None,
) -> StatsOutcome:
    """Read and upsert the statistics of a range of days for each family, within the shared daily quota."""
    log = log or logging.getLogger(__name__)
    now = now or ledger.clock()
    account_id = client.account_id()
    calendar = ledger.calendar
    planned = plan(request, warehouse, account_id, now, calendar)
    total = sum(len(c) for c in planned.values())
    remaining = ledger.remaining()
    log.info(
        f"report plan for {request.first_day}..{request.last_day} (account days, {calendar.timezone}; "
        f"lookback {request.lookback_days} days): "
        f"{total} calls ({', '.join(f'{k} {len(v)}' for k, v in planned.items())}); "
        f"quota left today: {remaining} of {ledger.quota}"
        + ("" if total <= remaining else f"; {total - remaining} calls will wait for tomorrow's quota")
    )
    outcomes = {name: FamilyOutcome(name, planned=calls) for name, calls in planned.items()}
    exhausted = False
    for name, calls in planned.items():
        family, outcome = FAMILIES[name], outcomes[name]
        metric_id = None
        if family.needs_conversion_metric and calls:
            with warehouse.engine.connect() as conn:
                metric_id, outcome.metric_note = resolve_conversion_metric(
                    conn, account_id, request.conversion_metric_name, request.conversion_metric_id
                )
                refusal = (
                    refused_metric(conn, account_id, metric_id, now - REFUSAL_MEMORY) if metric_id else None
                )
            if metric_id is None:
                outcome.skipped = outcome.metric_note
            elif refusal:
                outcome.skipped = _refusal(metric_id, refusal)
            if outcome.skipped:
                log.warning(f"{family.report}: skipped: {outcome.skipped}")
                continue
        for index, call in enumerate(calls):
            if exhausted:
                outcome.deferred = calls[index:]
                break
            attributes = request_attributes(
                family, call, client.revision, metric_id, calendar, ledger.clock()
            )
            pages: list = []
            requests = 0
            try:
                url = None
                while True:  # every page of the call, each a report request of the quota
                    if not ledger.reserve():
                        raise _Deferred()
                    before = _report_requests(client)
                    try:
                        data, url = client.report_page(family.report, attributes, url)
                    finally:
                        sent = _report_requests(client) - before
                        requests += sent
                        ledger.add(sent - 1)  # the reserved slot counted one; retries count too
                    pages.append(data)
                    if url is None:
                        break
            except _Deferred:
                if pages:
                    log.warning(f"{call.label()}: no quota for page {len(pages) + 1}; the call waits, whole")
                outcome.deferred = calls[index:]
                break
            except QuotaExhausted as exc:
                ledger.close_day()
                ledger.log_call(
                    call, "quota_exhausted", requests=requests, metric_id=metric_id, run_id=request.run_id,
                    detail=str(exc),
                )  # fmt: skip
                log.warning(f"{call.label()}: {exc}")
                exhausted = True
                outcome.deferred = calls[index:]
                break
            except Exception as exc:
                if isinstance(exc, KlaviyoApiError) and _metric_refused(exc):
                    ledger.log_call(
                        call, "refused", metric_id=metric_id, run_id=request.run_id, detail=exc.detail
                    )
                    outcome.skipped = _refusal(metric_id, exc.detail)
                    log.warning(f"{family.report}: skipped: {outcome.skipped}")
                    break
                ledger.log_call(
                    call, "failed", requests=requests, metric_id=metric_id, run_id=request.run_id,
                    detail=str(exc)[:2000],
                )  # fmt: skip
                raise
            fetched_at = ledger.clock()
            read = report_rows(
                family, call, combine_pages(call, pages), account_id, fetched_at, metric_id, calendar
            )
            frame = read.frame
            if name == "campaign":
                frame = _whole_sends(frame, call, warehouse, account_id, calendar, now)
            for reason in read.rejected[:20]:
                log.warning(f"rejected report result: {reason}")
            with warehouse.transaction() as conn:
                counts = warehouse.upsert_frame(
                    conn, family.table, frame, key=family.key, guard="fetched_at", changed_only=True
                )
                if not read.rejected:  # a rejected result's days are read again by the next run
                    mark_loaded(conn, account_id, call, fetched_at, request.run_id)
                ledger.log_call(
                    call, "ok", requests=requests, rows=counts.inserted + counts.updated,
                    rejected=len(read.rejected), metric_id=metric_id, run_id=request.run_id,
                    detail="; ".join(read.rejected[:5]) or None, conn=conn,
                )  # fmt: skip
            outcome.made.append(call)
            outcome.pages += len(pages)
            outcome.rejected += read.rejected
            outcome.counts += counts
            log.info(
                f"{call.label()}: {len(pages)} page(s), {len(frame)} rows: {counts.inserted} new, "
                f"{counts.updated} revised, {counts.skipped} unchanged"
                + (f", {len(read.rejected)} results rejected" if read.rejected else "")
            )
        if outcome.deferred:
            log.warning(
                f"{family.report}: {len(outcome.deferred)} calls deferred to the next day's quota "
                f"({outcome.deferred[0].start}..{outcome.deferred[-1].end})"
            )
    used, closed = ledger.usage()
    return StatsOutcome(
        account_id,
        outcomes,
        used,
        ledger.quota,
        quota_exhausted=exhausted or closed,
        today=calendar.today(now),
    )


def _whole_sends(frame, call: ReportCall, warehouse: Warehouse, account_id: str, calendar, now: dt.datetime):
    """The campaign rows whose send the call's timeframe holds whole: sends that began between its first day
    and its last kept day. Another campaign's figures in the response are partial, and are dropped."""
    keep_until = campaign_keep_until(call, calendar.today(now))
    with warehouse.engine.connect() as conn:
        began = campaign_send_days(conn, account_id, calendar, call.start, keep_until)
    return frame[frame["campaign_id"].isin(began)].reset_index(drop=True)


def _refusal(metric_id: str, detail: str) -> str:
    return f"Klaviyo refused conversion metric {metric_id} for values data: {detail}"


def _report_requests(client: KlaviyoClient) -> int:
    return sum(s.calls for e, s in client.stats.per_endpoint.items() if e.endswith("-reports"))


def _metric_refused(exc: KlaviyoApiError) -> bool:
    pointer = str((exc.source or {}).get("pointer", "")) if isinstance(exc.source, dict) else ""
    return exc.status == 400 and (
        "conversion_metric_id" in pointer or "does not support querying for values" in (exc.detail or "")
    )
