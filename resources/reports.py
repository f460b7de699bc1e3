"""The Reporting API layer: what each statistics family asks Klaviyo, how a range of days becomes the fewest
calls the API allows, the call ledger every run shares, and report responses as rows.

Klaviyo allows 1 report request/s, 2/min and 225/day per account (KLAVIYO_API.md §4, §6). Its docs give these
limits on each reporting operation and do not say whether the seven operations share them; every report request
is budgeted against one shared pool, which is safe under either reading. Series reports cover at most 60 days at
a daily interval; values reports at most a year. Days are the account's calendar days (`AccountCalendar`);
timeframes never end in the future. Statistics are the API's own names; rates are its fractions in [0, 1].
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from resources.calendar import UTC_CALENDAR, AccountCalendar
from resources.ratelimit import REPORTS

UTC = dt.UTC
DAILY_QUOTA: int = REPORTS.daily  # report requests per account and day
NOW_MARGIN = dt.timedelta(seconds=5)  # a timeframe ends at least this long before now
# A campaign's send can run over a few days (throttled or recipients' local time): a campaign call that does not
# reach today keeps only campaigns whose send began at least this many days before its end, so no send is cut.
SEND_SPAN_DAYS = 3

# Campaign and flow statistics (KLAVIYO_API.md §6); four more from revision 2025-10-15.
MESSAGE_STATISTICS = (
    "average_order_value", "bounce_rate", "bounced", "bounced_or_failed", "bounced_or_failed_rate",
    "click_rate", "click_to_open_rate", "clicks", "clicks_unique", "conversion_rate", "conversion_uniques",
    "conversion_value", "conversions", "delivered", "delivery_rate", "failed", "failed_rate", "open_rate",
    "opens", "opens_unique", "recipients", "revenue_per_recipient", "spam_complaint_rate", "spam_complaints",
    "unsubscribe_rate", "unsubscribe_uniques", "unsubscribes",
)  # fmt: skip
MESSAGE_STATISTICS_2025_10 = (
    "message_segment_count_sum", "text_message_credit_usage_amount", "text_message_roi", "text_message_spend",
)  # fmt: skip
FORM_STATISTICS = (
    "closed_form", "closed_form_uniques", "qualified_form", "qualified_form_uniques", "submit_rate", "submits",
    "submitted_form_step", "submitted_form_step_uniques", "viewed_form", "viewed_form_step",
    "viewed_form_step_uniques", "viewed_form_uniques",
)  # fmt: skip
SEGMENT_STATISTICS = ("members_added", "members_removed", "net_members_changed", "total_members")

# Typed columns of the statistics tables (everything Klaviyo returns also lands in `statistics` JSONB).
MESSAGE_COUNTS = (
    "recipients", "delivered", "bounced", "failed", "opens", "opens_unique", "clicks", "clicks_unique",
    "conversions", "conversion_uniques", "unsubscribes", "unsubscribe_uniques", "spam_complaints",
)  # fmt: skip
MESSAGE_FIGURES = (
    "conversion_value", "open_rate", "click_rate", "click_to_open_rate", "conversion_rate", "delivery_rate",
    "bounce_rate", "unsubscribe_rate", "spam_complaint_rate", "revenue_per_recipient", "average_order_value",
)  # fmt: skip


class ReportFormatError(ValueError):
    """A report response that does not have the documented shape (nothing of it is loaded)."""


@dataclass(frozen=True)
class Family:
    """One statistics family: its report, table, key and limits."""

    name: str
    report: str
    table: str
    groupings: tuple[str, ...]
    counts: tuple[str, ...]
    figures: tuple[str, ...]
    series: bool
    max_days: int
    needs_conversion_metric: bool = False
    earliest: dt.date | None = None

    @property
    def key(self) -> tuple[str, ...]:
        return ("account_id", *self.groupings, *(("day",) if self.series else ()))

    def statistics(self, revision: str) -> list[str]:
        if self.name in ("flow", "campaign"):
            extra = MESSAGE_STATISTICS_2025_10 if revision >= "2025-10-15" else ()
            return [*MESSAGE_STATISTICS, *extra]
        return list(FORM_STATISTICS if self.name == "form" else SEGMENT_STATISTICS)


FAMILIES: dict[str, Family] = {
    "flow": Family(
        "flow",
        "flow-series",
        "klaviyo_flow_stats_daily",
        ("flow_id", "flow_message_id", "send_channel"),
        MESSAGE_COUNTS,
        MESSAGE_FIGURES,
        series=True,
        max_days=60,
        needs_conversion_metric=True,
    ),
    "form": Family(
        "form",
        "form-series",
        "klaviyo_form_stats_daily",
        ("form_id",),
        tuple(s for s in FORM_STATISTICS if s != "submit_rate"),
        ("submit_rate",),
        series=True,
        max_days=60,
    ),
    "segment": Family(
        "segment",
        "segment-series",
        "klaviyo_segment_stats_daily",
        ("segment_id",),
        SEGMENT_STATISTICS,
        (),
        series=True,
        max_days=60,
        earliest=dt.date(2023, 6, 1),
    ),
    "campaign": Family(
        "campaign",
        "campaign-values",
        "klaviyo_campaign_stats",
        ("campaign_id", "campaign_message_id", "send_channel"),
        MESSAGE_COUNTS,
        MESSAGE_FIGURES,
        series=False,
        max_days=365,
        needs_conversion_metric=True,
    ),
}


@dataclass(frozen=True)
class ReportCall:
    """One report query (one or more pages): a family over the account's days [start, end] (both inclusive).
    `covers` are the days it loads when they differ from [start, end]: a campaign call reaches past the send
    days it loads, so that every send it keeps is whole."""

    family: str
    start: dt.date
    end: dt.date
    covers: tuple[dt.date, ...] | None = None

    @property
    def days(self) -> list[dt.date]:
        if self.covers is not None:
            return list(self.covers)
        return [self.start + dt.timedelta(days=k) for k in range((self.end - self.start).days + 1)]

    def label(self) -> str:
        return f"{FAMILIES[self.family].report} {self.start}..{self.end}"


def plan_calls(family: Family, days: Iterable[dt.date]) -> list[ReportCall]:
    """The fewest calls that cover `days`: each starts at the first day not yet covered and spans the most
    days the API allows (days in between are read too: calls are scarce, re-reading a day is harmless)."""
    wanted = sorted(set(days))
    if family.earliest is not None:
        wanted = [d for d in wanted if d >= family.earliest]
    calls: list[ReportCall] = []
    i = 0
    while i < len(wanted):
        start = wanted[i]
        limit = start + dt.timedelta(days=family.max_days - 1)
        j = i
        while j + 1 < len(wanted) and wanted[j + 1] <= limit:
            j += 1
        calls.append(ReportCall(family.name, start, wanted[j]))
        i = j + 1
    return calls


def plan_campaign_calls(send_days: Iterable[dt.date], today: dt.date) -> list[ReportCall]:
    """Campaign values calls for campaigns whose sends began on `send_days`: each call starts on the first
    such day and runs as far as the API allows (a year, never past today), so that every send it keeps is
    whole; a call that ends before today keeps only the sends that began SEND_SPAN_DAYS before its end."""
    wanted = sorted(set(send_days))
    calls: list[ReportCall] = []
    i = 0
    while i < len(wanted):
        start = wanted[i]
        end = min(start + dt.timedelta(days=FAMILIES["campaign"].max_days - 1), today)
        cutoff = end if end >= today else end - dt.timedelta(days=SEND_SPAN_DAYS)
        j = i
        while j + 1 < len(wanted) and wanted[j + 1] <= cutoff:
            j += 1
        calls.append(ReportCall("campaign", start, end, tuple(wanted[i : j + 1])))
        i = j + 1
    return calls


def campaign_keep_until(call: ReportCall, today: dt.date) -> dt.date:
    """The last send day whose campaigns a campaign call holds whole (see plan_campaign_calls)."""
    return call.end if call.end >= today else call.end - dt.timedelta(days=SEND_SPAN_DAYS)


def timeframe(call: ReportCall, calendar: AccountCalendar, now: dt.datetime) -> dict[str, str]:
    """The call's days as a timeframe in the account's wall-clock time (Klaviyo reads start and end in the
    account's time zone and ignores the offset; both ends are inclusive): from the first day's midnight to the
    last second of the last day, or to just before now when that is earlier (never in the future)."""
    start = calendar.start_of(call.start)
    end = min(calendar.end_of(call.end) - dt.timedelta(seconds=1), now - NOW_MARGIN)
    if end <= start:
        raise ValueError(f"{call.label()}: the timeframe would end before it starts ({end} <= {start})")
    return {"start": calendar.wall_clock(start), "end": calendar.wall_clock(end)}


def request_attributes(
    family: Family,
    call: ReportCall,
    revision: str,
    metric_id: str | None,
    calendar: AccountCalendar = UTC_CALENDAR,
    now: dt.datetime | None = None,
) -> dict:
    """The report's `data.attributes`: the whole days of the call in the account's time zone, up to now."""
    attributes: dict[str, Any] = {
        "statistics": family.statistics(revision),
        "timeframe": timeframe(call, calendar, now or dt.datetime.now(UTC)),
    }
    if family.series:
        attributes["interval"] = "daily"
    if family.needs_conversion_metric:
        attributes["conversion_metric_id"] = metric_id
    if family.name == "campaign" and revision >= "2025-10-15":  # group_by for campaigns from 2025-10-15
        attributes["group_by"] = list(family.groupings)
    return attributes


def combine_pages(call: ReportCall, pages: list[Any]) -> dict[str, Any]:
    """The pages of one report query as one response `data`: their results in order, the series' date_times
    (which every page must repeat unchanged)."""
    if len(pages) == 1:
        return pages[0]
    results: list[Any] = []
    date_times = None
    for n, page in enumerate(pages):
        attributes = page.get("attributes") if isinstance(page, dict) else None
        if not isinstance(attributes, dict) or not isinstance(attributes.get("results"), list):
            raise ReportFormatError(f"{call.label()}: page {n + 1} has no data.attributes.results list")
        if n == 0:
            date_times = attributes.get("date_times")
        elif attributes.get("date_times") != date_times:
            raise ReportFormatError(f"{call.label()}: page {n + 1} has other date_times than page 1")
        results += attributes["results"]
    combined: dict[str, Any] = {"results": results}
    if date_times is not None:
        combined["date_times"] = date_times
    return {**pages[0], "attributes": combined}


@dataclass
class ReportRows:
    """A report response as rows, and the results that could not be read (rejected, with the reason)."""

    frame: pd.DataFrame
    rejected: list[str]


def report_rows(
    family: Family,
    call: ReportCall,
    data: Any,
    account_id: str,
    fetched_at: dt.datetime,
    metric_id: str | None,
    calendar: AccountCalendar = UTC_CALENDAR,
) -> ReportRows:
    """A report response's `data` as table rows (one per grouping and day for series reports). A response
    without the documented shape raises ReportFormatError; a single malformed result is rejected (counted,
    with its reason) and the others load."""
    if not isinstance(data, dict) or not isinstance(data.get("attributes"), dict):
        raise ReportFormatError(f"{call.label()}: the response has no data.attributes")
    attributes = data["attributes"]
    results = attributes.get("results")
    if not isinstance(results, list):
        raise ReportFormatError(f"{call.label()}: data.attributes.results is not a list")
    days: list[dt.date] = []
    if family.series:
        stamps = attributes.get("date_times")
        if not isinstance(stamps, list):
            raise ReportFormatError(f"{call.label()}: a series report without data.attributes.date_times")
        try:
            days = [calendar.day_of(s) for s in stamps]  # the account's calendar day
        except (TypeError, ValueError) as exc:
            raise ReportFormatError(f"{call.label()}: unreadable date_times entry ({exc})") from None
    rows: list[dict[str, Any]] = []
    rejected: list[str] = []
    for n, result in enumerate(results):
        groupings = result.get("groupings") if isinstance(result, dict) else None
        statistics = result.get("statistics") if isinstance(result, dict) else None
        if not isinstance(groupings, dict) or not isinstance(statistics, dict):
            rejected.append(f"{call.label()}: result {n} lacks groupings or statistics")
            continue
        missing = [g for g in family.groupings if not groupings.get(g)]
        if missing:
            rejected.append(f"{call.label()}: result {n} has no {missing} in its groupings {groupings}")
            continue
        base = {"account_id": account_id, **{g: str(groupings[g]) for g in family.groupings}}
        if family.series:
            unaligned = [
                name for name, v in statistics.items() if not isinstance(v, list) or len(v) != len(days)
            ]
            if unaligned:
                rejected.append(
                    f"{call.label()}: statistic {unaligned[0]!r} of result {n} does not align with date_times"
                )
                continue
            for k, day in enumerate(days):
                rows.append({**base, "day": day, "statistics": {s: v[k] for s, v in statistics.items()}})
        else:
            rows.append({**base, "statistics": dict(statistics)})
    frame = pd.DataFrame(rows, columns=[*family.key, "statistics"])
    for column in family.counts:
        frame[column] = [_count(r.get(column)) for r in frame["statistics"]]
    for column in family.figures:
        frame[column] = pd.array([_figure(r.get(column)) for r in frame["statistics"]], dtype="Float64")
    frame["fetched_at"] = pd.Timestamp(fetched_at)
    if family.needs_conversion_metric:
        frame["conversion_metric_id"] = metric_id
    if not family.series:
        frame["timeframe_start"] = call.start
        frame["timeframe_end"] = call.end
    return ReportRows(frame, rejected)


def _count(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return round(float(value))
    except (TypeError, ValueError):
        return None  # kept as sent in `statistics`


def _figure(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
