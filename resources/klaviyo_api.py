"""What the client knows about Klaviyo's endpoints (revision 2026-07-15), and its filter syntax.

Written from Klaviyo's documentation and OpenAPI spec (see ../shared/KLAVIYO_API.md §2-§4): page-size maxima,
rate-limit tiers, and which filter operators each field allows. A filter that Klaviyo would reject with a 400
is refused here, before it is sent.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from resources.ratelimit import REPORTS, XS, Tier

UTC = dt.UTC
CMP = frozenset({"greater-or-equal", "greater-than", "less-or-equal", "less-than"})
# Revisions this endpoint table is right for: page[size] on campaigns, lists, segments and tags, 1,000 events
# a page and `has(metric)` arrived by 2026-04-15 (KLAVIYO_API.md §8, item 1); nothing it uses changed in 2026-07-15.
SUPPORTED_REVISIONS = ("2026-04-15", "2026-07-15")
ACCOUNTS_PATH = "/api/accounts"
ACCOUNTS_SCOPE = "accounts:read"
ACCOUNTS_TIER = XS
# System webhooks (spec 2026-07-15): GET/POST /api/webhooks, GET/PATCH/DELETE /api/webhooks/{id} and GET
# /api/webhook-topics[/{id}], every operation burst 1/s and steady 15/m (`x-klaviyo-ratelimit`: the XS tier);
# reads need webhooks:read, create, update and delete webhooks:write.
WEBHOOKS_PATH = "/api/webhooks"
WEBHOOK_TOPICS_PATH = "/api/webhook-topics"
WEBHOOKS_READ_SCOPE = "webhooks:read"
WEBHOOKS_WRITE_SCOPE = "webhooks:write"
WEBHOOKS_TIER = XS


class UnsupportedRevision(ValueError):
    """A configured revision whose endpoints, filters or page sizes this client does not know."""


def check_revision(revision: str) -> str:
    """The revision, or an error listing the ones this client supports."""
    if revision not in SUPPORTED_REVISIONS:
        raise UnsupportedRevision(
            f"Klaviyo revision {revision!r} is not supported by this pipeline's endpoint table; "
            f"supported: {', '.join(SUPPORTED_REVISIONS)} (set KLAVIYO_REVISION to one of them)"
        )
    return revision


@dataclass(frozen=True)
class Endpoint:
    """A list endpoint: path, JSON:API type, largest page, tier, the timestamp it windows on, its filters, the
    key scope it needs, and the stricter tiers some `additional-fields` values add on top of its own."""

    entity: str
    path: str
    type: str
    page_size: int | None
    tier: Tier
    updated_field: str | None
    filters: dict[str, frozenset[str]] = field(default_factory=dict)
    archived_passes: bool = False
    channel_passes: tuple[str, ...] = ()
    scope: str = ""
    field_tiers: dict[str, Tier] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.scope:
            object.__setattr__(self, "scope", f"{self.entity}:read")

    def tiers_for(self, additional_fields: Iterable[str]) -> list[tuple[str, Tier]]:
        """(bucket, tier) pairs a request with these additional fields spends: the endpoint's, plus the
        stricter tier of each field that has one (Klaviyo counts a request against both)."""
        extra = [
            (f"{self.entity}:{f}", self.field_tiers[f]) for f in additional_fields if f in self.field_tiers
        ]
        return [(self.entity, self.tier), *extra]

    def under(self, record_id: str) -> Endpoint:
        """The endpoint with a record's id (URL-quoted) in its `{id}` (e.g. /api/lists/{id}/profiles); its bucket
        in the rate budget stays the endpoint's."""
        return replace(self, path=self.path.replace("{id}", quote(record_id, safe="")))


def ops(*names: str) -> frozenset[str]:
    """A field's allowed filter operators."""
    return frozenset(names)


@dataclass(frozen=True)
class ReportEndpoint:
    """A Reporting API query: its path and the key scope it needs. Its results may come in pages (the spec
    declares `page_cursor` on the campaign and flow reports); the client follows `links.next` on every one."""

    kind: str
    path: str
    scope: str
    tier: Tier = REPORTS


REPORT_ENDPOINTS: dict[str, ReportEndpoint] = {
    r.kind: r
    for r in [
        ReportEndpoint("campaign-values", "/api/campaign-values-reports", "campaigns:read"),
        ReportEndpoint("flow-values", "/api/flow-values-reports", "flows:read"),
        ReportEndpoint("flow-series", "/api/flow-series-reports", "flows:read"),
        ReportEndpoint("form-values", "/api/form-values-reports", "forms:read"),
        ReportEndpoint("form-series", "/api/form-series-reports", "forms:read"),
        ReportEndpoint("segment-values", "/api/segment-values-reports", "segments:read"),
        ReportEndpoint("segment-series", "/api/segment-series-reports", "segments:read"),
    ]
}


class FilterNotAllowed(ValueError):
    """A filter Klaviyo would reject (operator not allowed for the field, or a value it cannot take)."""


@dataclass(frozen=True)
class Cond:
    op: str
    field: str
    value: Any = None


def render_value(value: Any) -> str:
    """Klaviyo's value syntax: strings quoted, datetimes bare in UTC, booleans and numbers bare, lists bracketed."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise FilterNotAllowed(f"naive datetime {value!r}: give a timezone")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterNotAllowed(f"{value!r} cannot be sent in a filter")
        return repr(value)
    if isinstance(value, str):
        if '"' not in value:
            return f'"{value}"'
        if "'" not in value:
            return f"'{value}'"
        raise FilterNotAllowed(f"{value!r} holds both quote characters and cannot be written in a filter")
    if isinstance(value, list | tuple):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    raise FilterNotAllowed(f"cannot write {type(value).__name__} in a filter")


def build_filter(endpoint: Endpoint, conditions: Iterable[Cond]) -> str | None:
    """The filter string for these conditions, or an error naming the first one Klaviyo would reject."""
    parts = []
    for c in conditions:
        allowed = endpoint.filters.get(c.field)
        if allowed is None:
            raise FilterNotAllowed(f"{endpoint.path}: '{c.field}' cannot be filtered on")
        if c.op not in allowed:
            raise FilterNotAllowed(
                f"{endpoint.path}: '{c.op}' is not allowed for '{c.field}' (allowed: {', '.join(sorted(allowed))})"
            )
        if c.op == "has":
            parts.append(f"has({c.field})")
        else:
            parts.append(f"{c.op}({c.field},{render_value(c.value)})")
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else "and(" + ",".join(parts) + ")"


def parse_timestamp(value: Any) -> dt.datetime | None:
    """Klaviyo's datetimes in any shape it sends: T or space, with or without microseconds, Z or an offset.

    Returns None for None; raises ValueError for text that is not a datetime.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 10 and text[10] == " ":
            text = text[:10] + "T" + text[11:]
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        parsed = dt.datetime.fromisoformat(text)
    else:
        raise ValueError(f"not a datetime: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def window_conditions(endpoint: Endpoint, start: dt.datetime | None, end: dt.datetime | None) -> list[Cond]:
    """Server-side conditions for the window [start, end) on the endpoint's timestamp.

    Each bound uses the best operator the field allows, widened to whole seconds; records outside the exact
    window are dropped client-side. A bound the field cannot take at all is applied client-side only.
    """
    fname = endpoint.updated_field
    allowed = endpoint.filters.get(fname or "", frozenset())
    out: list[Cond] = []
    if start is not None:
        floor = start.replace(microsecond=0)
        if "greater-or-equal" in allowed:
            out.append(Cond("greater-or-equal", fname, floor))
        elif "greater-than" in allowed:
            out.append(Cond("greater-than", fname, floor - dt.timedelta(seconds=1)))
    if end is not None:
        ceil = end if end.microsecond == 0 else end.replace(microsecond=0) + dt.timedelta(seconds=1)
        if "less-than" in allowed:
            out.append(Cond("less-than", fname, ceil))
        elif "less-or-equal" in allowed:
            out.append(Cond("less-or-equal", fname, ceil))
    return out
