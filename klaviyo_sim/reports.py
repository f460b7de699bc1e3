"""The Reporting API: values and series reports with deterministic statistics per entity and day."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import threading
import uuid
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from klaviyo_sim.common import hash_str, mix64, parse_time
from klaviyo_sim.errors import ApiError

if TYPE_CHECKING:  # annotations only: data imports this module
    from klaviyo_sim.data import Account, Resource

UTC = dt.UTC
# Conversion metrics a values report refuses ("does not support querying for values data").
REFUSED_CONVERSION_METRICS = {"Active on Site"}
MESSAGE_STATS = [
    "average_order_value", "bounce_rate", "bounced", "bounced_or_failed", "bounced_or_failed_rate", "click_rate",
    "click_to_open_rate", "clicks", "clicks_unique", "conversion_rate", "conversion_uniques", "conversion_value",
    "conversions", "delivered", "delivery_rate", "failed", "failed_rate", "open_rate", "opens", "opens_unique",
    "recipients", "revenue_per_recipient", "spam_complaint_rate", "spam_complaints", "unsubscribe_rate",
    "unsubscribe_uniques", "unsubscribes", "message_segment_count_sum", "text_message_credit_usage_amount",
    "text_message_roi", "text_message_spend",
]  # fmt: skip
FORM_STATS = [
    "closed_form", "closed_form_uniques", "qualified_form", "qualified_form_uniques", "submit_rate", "submits",
    "submitted_form_step", "submitted_form_step_uniques", "viewed_form", "viewed_form_step",
    "viewed_form_step_uniques", "viewed_form_uniques",
]  # fmt: skip
SEGMENT_STATS = ["members_added", "members_removed", "net_members_changed", "total_members"]
TIMEFRAME_KEYS = {
    "today", "yesterday", "this_week", "last_week", "this_month", "last_month", "this_year", "last_year",
    "last_7_days", "last_30_days", "last_90_days", "last_3_months", "last_12_months", "last_365_days",
}  # fmt: skip
INTERVAL_LIMITS = {"hourly": 7, "daily": 60, "weekly": 366, "monthly": 364}
SEGMENT_DATA_START = dt.date(2023, 6, 1)

REPORTS = {
    # operation id: (data.type, family, series?)
    "query_campaign_values": ("campaign-values-report", "campaign", False),
    "query_flow_values": ("flow-values-report", "flow", False),
    "query_flow_series": ("flow-series-report", "flow", True),
    "query_form_values": ("form-values-report", "form", False),
    "query_form_series": ("form-series-report", "form", True),
    "query_segment_values": ("segment-values-report", "segment", False),
    "query_segment_series": ("segment-series-report", "segment", True),
}


class ReportError(ValueError):
    def __init__(self, detail: str, pointer: str = "/data/", parameter: str | None = None):
        super().__init__(detail)
        self.pointer = pointer
        self.parameter = parameter

    @property
    def source(self) -> dict:
        return {"parameter": self.parameter} if self.parameter else {"pointer": self.pointer}


def _h(*parts: Any) -> int:
    return mix64(hash_str(":".join(str(p) for p in parts)))


@cache
def _segment_hash(seed: int, segment_id: str, day: dt.date) -> int:
    """A segment's day hash (its members added and removed), kept per seed: every account of a seed walks the
    same days from SEGMENT_DATA_START to build its running totals."""
    return _h(seed, "segment", segment_id, day.isoformat())


def message_counts(account: Account, kind: str, entity_id: str, day: dt.date) -> dict[str, float]:
    """Base counts of a flow or campaign for one day (rates are derived from these)."""
    h = _h(account.seed, kind, entity_id, day.isoformat())
    recipients = 50 + h % 950
    delivered = recipients - (h >> 10) % max(1, recipients // 20)
    opens_unique = (delivered * (20 + (h >> 20) % 40)) // 100
    clicks_unique = (opens_unique * (5 + (h >> 28) % 30)) // 100
    conversions = (clicks_unique * ((h >> 36) % 25)) // 100 + account.stat_revisions.get(
        (kind, entity_id, day), 0
    )
    return {
        "recipients": recipients,
        "delivered": delivered,
        "bounced": recipients - delivered,
        "failed": 0,
        "opens_unique": opens_unique,
        "opens": opens_unique + (h >> 44) % 50,
        "clicks_unique": clicks_unique,
        "clicks": clicks_unique + (h >> 50) % 20,
        "conversions": conversions,
        "conversion_uniques": conversions,
        "conversion_value": round(conversions * (20 + (h >> 40) % 80) * 1.25, 2),
        "unsubscribes": (h >> 54) % 5,
        "unsubscribe_uniques": (h >> 54) % 5,
        "spam_complaints": (h >> 58) % 2,
        "message_segment_count_sum": 0,
        "text_message_credit_usage_amount": 0,
        "text_message_spend": 0.0,
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 6) if b else 0.0


def message_statistics(counts: dict[str, float], wanted: list[str]) -> dict[str, float]:
    c = counts
    derived = {
        "average_order_value": _ratio(c["conversion_value"], c["conversions"]),
        "bounce_rate": _ratio(c["bounced"], c["recipients"]),
        "bounced_or_failed": c["bounced"] + c["failed"],
        "bounced_or_failed_rate": _ratio(c["bounced"] + c["failed"], c["recipients"]),
        "click_rate": _ratio(c["clicks_unique"], c["delivered"]),
        "click_to_open_rate": _ratio(c["clicks_unique"], c["opens_unique"]),
        "conversion_rate": _ratio(c["conversion_uniques"], c["delivered"]),
        "delivery_rate": _ratio(c["delivered"], c["recipients"]),
        "failed_rate": _ratio(c["failed"], c["recipients"]),
        "open_rate": _ratio(c["opens_unique"], c["delivered"]),
        "revenue_per_recipient": _ratio(c["conversion_value"], c["recipients"]),
        "spam_complaint_rate": _ratio(c["spam_complaints"], c["delivered"]),
        "unsubscribe_rate": _ratio(c["unsubscribe_uniques"], c["delivered"]),
        "text_message_roi": 0.0,
    }
    merged = {**c, **derived}
    return {s: merged[s] for s in wanted}


def campaign_send_days(account: Account, campaign: Resource) -> list[dt.date]:
    """The account-local days a campaign's send went out on (one, or 2-3 for a throttled or local-time send)."""
    return account.campaign_send_days(campaign.id)


def campaign_counts(
    account: Account, campaign_id: str, days: list[dt.date] | None = None
) -> dict[str, float] | None:
    """A campaign's base counts summed over its send days (all of them, or those among `days`); None when
    no send day is left (a values report does not list the campaign then)."""
    send_days = account.campaign_send_days(campaign_id)
    if days is not None:
        wanted = set(days)
        send_days = [d for d in send_days if d in wanted]
    if not send_days:
        return None
    return _sum([message_counts(account, "campaign", campaign_id, d) for d in send_days])


def campaign_statistics(
    account: Account, campaign_id: str, stats: list[str] | None = None, days: list[dt.date] | None = None
) -> dict[str, float] | None:
    """The figures a campaign values report gives for a campaign: its whole send, or the send days among
    `days` (a timeframe's days); None when the campaign would not be listed."""
    counts = campaign_counts(account, campaign_id, days)
    return None if counts is None else message_statistics(counts, stats or MESSAGE_STATS)


def form_counts(account: Account, form_id: str, day: dt.date) -> dict[str, float]:
    h = _h(account.seed, "form", form_id, day.isoformat())
    viewed_u = 20 + h % 480
    viewed = viewed_u + (h >> 12) % 60
    submits = (viewed_u * (2 + (h >> 20) % 15)) // 100 + account.stat_revisions.get(("form", form_id, day), 0)
    closed = (viewed_u * (30 + (h >> 28) % 40)) // 100
    return {
        "viewed_form": viewed,
        "viewed_form_uniques": viewed_u,
        "viewed_form_step": viewed,
        "viewed_form_step_uniques": viewed_u,
        "submits": submits,
        "submitted_form_step": submits,
        "submitted_form_step_uniques": submits,
        "closed_form": closed,
        "closed_form_uniques": closed,
        "qualified_form": viewed_u,
        "qualified_form_uniques": viewed_u,
    }


def form_statistics(counts: dict[str, float], wanted: list[str]) -> dict[str, float]:
    merged = {**counts, "submit_rate": _ratio(counts["submits"], counts["viewed_form_uniques"])}
    return {s: merged[s] for s in wanted}


def segment_day(account: Account, segment_id: str, day: dt.date) -> dict[str, int]:
    """Members added/removed on a day, and the total at the end of it (consistent day to day)."""
    if day < SEGMENT_DATA_START:
        return {"members_added": 0, "members_removed": 0, "net_members_changed": 0, "total_members": 0}
    totals = _segment_totals(account, segment_id, day)
    offset = (day - SEGMENT_DATA_START).days
    added, removed = _segment_moves(account, segment_id, day, _segment_hash(account.seed, segment_id, day))
    return {
        "members_added": added,
        "members_removed": removed,
        "net_members_changed": added - removed,
        "total_members": totals[offset],
    }


def _segment_moves(account: Account, segment_id: str, day: dt.date, h: int) -> tuple[int, int]:
    added = 10 + h % 40 + account.stat_revisions.get(("segment", segment_id, day), 0)
    return added, 5 + (h >> 16) % 30


_TOTALS_LOCK = threading.Lock()


def _segment_totals(account: Account, segment_id: str, day: dt.date) -> list[int]:
    """Running member totals from SEGMENT_DATA_START, extended and cached per account and segment."""
    cache: dict[str, list[int]] = account.__dict__.setdefault("_segment_totals", {})
    with _TOTALS_LOCK:
        totals = cache.setdefault(segment_id, [])
        need = (day - SEGMENT_DATA_START).days + 1
        total = totals[-1] if totals else 1000 + _h(account.seed, "segment-base", segment_id) % 20000
        while len(totals) < need:
            d = SEGMENT_DATA_START + dt.timedelta(days=len(totals))
            added, removed = _segment_moves(
                account, segment_id, d, _segment_hash(account.seed, segment_id, d)
            )
            total += added - removed
            totals.append(total)
        return totals


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]


def _timeframe(tf: Any, now: dt.datetime, zone: dt.tzinfo) -> tuple[dt.datetime, dt.datetime, bool]:
    """(start, end, explicit) as wall-clock times in the account's zone."""
    if not isinstance(tf, dict):
        raise ReportError(
            "'timeframe' must be an object with 'key' or 'start' and 'end'.", "/data/attributes/timeframe"
        )
    now = now.astimezone(zone)
    if "key" in tf:
        key = tf["key"]
        if key not in TIMEFRAME_KEYS:
            raise ReportError(f"'{key}' is not a valid timeframe key.", "/data/attributes/timeframe/key")
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        spans = {"today": 0, "yesterday": 1, "last_7_days": 7, "last_30_days": 30, "last_90_days": 90}
        days = spans.get(key, 365 if "year" in key or "12" in key or "365" in key else 30)
        start = today - dt.timedelta(days=days)
        end = today if key == "yesterday" else now
        if key == "today":
            start, end = today, now
        return start, end - dt.timedelta(seconds=1) if key == "yesterday" else end, False
    try:
        start, end = parse_time(tf["start"]), parse_time(tf["end"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReportError(
            "'timeframe' needs valid 'start' and 'end' datetimes.", "/data/attributes/timeframe"
        ) from None
    # Wall-clock times in the account's time zone: the offset sent is ignored, as Klaviyo documents.
    start, end = start.replace(tzinfo=zone), end.replace(tzinfo=zone)
    if end <= start:
        raise ReportError("'timeframe.end' must be after 'timeframe.start'.", "/data/attributes/timeframe")
    if end - start > dt.timedelta(days=366):
        raise ReportError("The timeframe must be one year or less.", "/data/attributes/timeframe")
    return start, end, True


def _timeframe_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.date, dt.date]:
    """First and last local day a timeframe covers; an end at exactly midnight closes the day before it."""
    first, last = start.date(), end.date()
    if end.time() == dt.time() and last > first:
        last -= dt.timedelta(days=1)
    return first, last


_FILTER = re.compile(r"^(equals|any|contains-any)\((\w+),(.*)\)$")


def _entity_filter(expr: str | None, field: str) -> set[str] | None:
    if not expr:
        return None
    text = expr.strip()
    if text.startswith("and(") and text.endswith(")"):
        text = text[4:-1]
    m = _FILTER.match(text)
    if not m or m.group(2) != field:
        raise ReportError(
            f"Invalid filter. Only equals/any on '{field}' is simulated.", "/data/attributes/filter"
        )
    raw = m.group(3).strip()
    try:
        value = json.loads(raw.replace("'", '"'))
    except json.JSONDecodeError:
        raise ReportError("Invalid filter value.", "/data/attributes/filter") from None
    return set(value) if isinstance(value, list) else {value}


def answer(
    account: Account,
    op,
    raw_body: bytes,
    base: str,
    page_cursor: str | None = None,
    page_size: int | None = None,
    refuse_future: bool = False,
    now: dt.datetime | None = None,
) -> dict:
    """A report's response; campaign/flow reports (whose operation declares `page_cursor`) come in pages of
    `page_size` results, the next page asked for by POSTing the same body to `links.next`."""
    try:
        return _answer(
            account, op, raw_body, base, page_cursor, page_size, refuse_future, now or dt.datetime.now(UTC)
        )
    except ReportError as exc:
        raise ApiError(400, "invalid", "Invalid input.", str(exc), exc.source) from None


def _answer(
    account: Account,
    op,
    raw_body: bytes,
    base: str,
    page_cursor: str | None,
    page_size: int | None,
    refuse_future: bool,
    now: dt.datetime,
) -> dict:
    report_type, family, series = REPORTS[op.operation_id]
    try:
        body = json.loads(raw_body or b"null")
        data = body["data"]
        attrs = data["attributes"]
    except (json.JSONDecodeError, TypeError, KeyError):
        raise ReportError(
            "The request body must be a JSON:API document with data.attributes.", "/data/"
        ) from None
    if data.get("type") != report_type:
        raise ReportError(f"data.type must be '{report_type}'.", "/data/type")
    allowed = {
        "campaign": MESSAGE_STATS,
        "flow": MESSAGE_STATS,
        "form": FORM_STATS,
        "segment": SEGMENT_STATS,
    }[family]
    stats = attrs.get("statistics")
    if not isinstance(stats, list) or not stats:
        raise ReportError("'statistics' is required.", "/data/attributes/statistics")
    for s in stats:
        if s not in allowed:
            raise ReportError(
                f"'{s}' is not a valid statistic for this report.", "/data/attributes/statistics"
            )
    start, end, explicit = _timeframe(attrs.get("timeframe"), now, account.zone)
    if refuse_future and explicit and end > now:
        raise ReportError(
            "The timeframe end cannot be in the future "
            f"(it is {end.isoformat()} in the account's time zone {account.timezone}).",
            "/data/attributes/timeframe/end",
        )
    first_day, last_day = _timeframe_days(start, end)
    if family in ("campaign", "flow"):
        metric_id = attrs.get("conversion_metric_id")
        if not metric_id:
            raise ReportError("'conversion_metric_id' is required.", "/data/attributes/conversion_metric_id")
        metric = account.by_id.get(("metric", metric_id))
        if metric is None:
            raise ReportError(f"Metric {metric_id} does not exist.", "/data/attributes/conversion_metric_id")
        if metric.attributes["name"] in REFUSED_CONVERSION_METRICS:
            raise ReportError(
                "Passed in conversion metric does not support querying for values data",
                "/data/attributes/conversion_metric_id",
            )
    interval = attrs.get("interval")
    if series:
        if interval not in INTERVAL_LIMITS:
            raise ReportError(
                "'interval' must be one of daily, hourly, weekly, monthly.", "/data/attributes/interval"
            )
        if interval != "daily":
            raise ReportError(
                f"The simulator only serves 'daily' series, not '{interval}'.", "/data/attributes/interval"
            )
        if (last_day - first_day).days + 1 > INTERVAL_LIMITS[interval]:
            raise ReportError(
                f"The timeframe is too long for interval '{interval}' (max {INTERVAL_LIMITS[interval]} days).",
                "/data/attributes/timeframe",
            )
    days = _days(first_day, last_day)
    if family == "segment":
        days = [d for d in days if d >= SEGMENT_DATA_START]
    results = _results(account, family, series, stats, days, attrs)
    self_link, next_link = f"{base}{op.path}", None
    if page_size and "page_cursor" in op.params:
        fingerprint = _h(account.seed, account.account_id, json.dumps(data, sort_keys=True))
        offset = 0 if page_cursor is None else _read_cursor(page_cursor, fingerprint)
        if page_cursor is not None:
            self_link += f"?page_cursor={quote(page_cursor, safe='')}"
        if offset + page_size < len(results):
            next_link = f"{base}{op.path}?page_cursor={_make_cursor(offset + page_size, fingerprint)}"
        results = results[offset : offset + page_size]
    attributes: dict[str, Any] = {"results": results}
    if series:
        # Local midnights written with the local offset: a day that crosses a DST change is one bucket.
        attributes = {
            "results": results,
            "date_times": [dt.datetime.combine(d, dt.time(), account.zone).isoformat() for d in days],
        }
    doc: dict[str, Any] = {
        "type": report_type,
        "id": str(uuid.UUID(int=_h(report_type, json.dumps(attrs, sort_keys=True)) << 64, version=4)),
        "attributes": attributes,
    }
    if family == "campaign":
        doc["relationships"] = {
            "campaigns": {
                "data": [{"type": "campaign", "id": r["groupings"]["campaign_id"]} for r in results]
            }
        }
    elif family == "flow":
        doc["relationships"] = {
            "flows": {"data": [{"type": "flow", "id": r["groupings"]["flow_id"]} for r in results]},
            "flow-messages": {
                "data": [{"type": "flow-message", "id": r["groupings"]["flow_message_id"]} for r in results]
            },
        }
    links = {"self": self_link}
    if next_link:
        links["next"] = next_link
    return {"data": doc, "links": links}


def _signature(offset: int, fingerprint: int) -> int:
    return mix64(fingerprint ^ mix64(offset)) & 0xFFFFFFFF


def _make_cursor(offset: int, fingerprint: int) -> str:
    text = f"report::{offset}::{fingerprint:x}::{_signature(offset, fingerprint):x}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _read_cursor(raw: str, fingerprint: int) -> int:
    """The offset a cursor points at; a cursor made for another request body (or garbage) is refused."""
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        kind, offset_text, made_for, signature = text.split("::")
        offset = int(offset_text)
        valid = (
            kind == "report" and offset > 0 and int(signature, 16) == _signature(offset, int(made_for, 16))
        )
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise ReportError("Invalid page cursor.", parameter="page_cursor")
    if int(made_for, 16) != fingerprint:
        raise ReportError(
            "The page cursor does not belong to this request: send the same body as for the first page.",
            parameter="page_cursor",
        )
    return offset


def _series(per_day: list[dict[str, float]], stats: list[str]) -> dict[str, list[float]]:
    """Each statistic's values day by day, from each day's statistics."""
    return {s: [day[s] for day in per_day] for s in stats}


def _results(
    account: Account, family: str, series: bool, stats: list[str], days: list[dt.date], attrs: dict
) -> list:
    results = []
    if family == "segment":
        wanted = _entity_filter(attrs.get("filter"), "segment_id")
        for seg in sorted(account.segments, key=lambda r: r.id):
            if wanted is not None and seg.id not in wanted:
                continue
            per_day = [segment_day(account, seg.id, d) for d in days]
            if series:
                statistics = _series(per_day, stats)
            else:
                total = {
                    "members_added": sum(p["members_added"] for p in per_day),
                    "members_removed": sum(p["members_removed"] for p in per_day),
                }
                total["net_members_changed"] = total["members_added"] - total["members_removed"]
                total["total_members"] = per_day[-1]["total_members"] if per_day else 0
                statistics = {s: total[s] for s in stats}
            results.append({"groupings": {"segment_id": seg.id}, "statistics": statistics})
    elif family == "form":
        wanted = _entity_filter(attrs.get("filter"), "form_id")
        for form in sorted(account.forms, key=lambda r: r.id):
            if wanted is not None and form.id not in wanted:
                continue
            per_day = [form_counts(account, form.id, d) for d in days]
            if series:
                statistics = _series([form_statistics(p, stats) for p in per_day], stats)
            else:
                statistics = form_statistics(_sum(per_day), stats)
            results.append({"groupings": {"form_id": form.id}, "statistics": statistics})
    elif family == "flow":
        wanted = _entity_filter(attrs.get("filter"), "flow_id")
        for flow in sorted(account.flows, key=lambda r: r.id):
            if wanted is not None and flow.id not in wanted:
                continue
            message_id = account.structure.report_message_id(flow)  # one of klaviyo_flow_messages
            per_day = [message_counts(account, "flow", flow.id, d) for d in days]
            if series:
                statistics = _series([message_statistics(p, stats) for p in per_day], stats)
            else:
                statistics = message_statistics(_sum(per_day), stats)
            groupings = {"flow_id": flow.id, "flow_message_id": message_id, "send_channel": "email"}
            results.append({"groupings": groupings, "statistics": statistics})
    else:
        wanted = _entity_filter(attrs.get("filter"), "campaign_id")
        with account.lock:
            campaigns = sorted(account.campaigns, key=lambda r: r.id)
        for camp in campaigns:
            if wanted is not None and camp.id not in wanted:
                continue
            # Per send day; only the send days inside the timeframe count (a partial send gives a partial sum).
            counts = campaign_counts(account, camp.id, days)
            if counts is None:
                continue
            channel = {"mobile_push": "push-notification"}.get(
                camp.internal["messages.channel"], camp.internal["messages.channel"]
            )
            groupings = {
                "campaign_id": camp.id,
                "campaign_message_id": camp.relationships["campaign-messages"][0][1],
                "send_channel": channel,
            }
            results.append({"groupings": groupings, "statistics": message_statistics(counts, stats)})
    return results


def _sum(per_day: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in per_day:
        for k, v in p.items():
            out[k] = out.get(k, 0) + v
    return out
