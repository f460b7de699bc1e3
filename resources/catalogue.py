"""The entity catalogue: each Klaviyo entity the pipeline reads, declared once.

An entry holds what the entity is at Klaviyo (its list endpoint: path, type, page size, rate tier, filters,
passes, `include`, the timestamp it windows on) and what it is in the warehouse (table, key, upsert guard,
the column its cursor lands in, how it streams, soft deletes, the columns a check must find filled), and
how it appears in Dagster (kind, group, description, freshness). Every registry the code needs (the client's
endpoints, the transforms' cursor column, the load plans, the CLI's choices, the checks, the sensors) is
derived from it. Adding an entity: an entry here, its transform shape (assets/transform.py), its migration.

Endpoint facts are Klaviyo's (revision 2026-07-15 spec, ../shared/KLAVIYO_API.md §3).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from resources.klaviyo_api import (
    ACCOUNTS_PATH,
    ACCOUNTS_SCOPE,
    CMP,
    REPORT_ENDPOINTS,
    Endpoint,
    ops,
)
from resources.ratelimit import XL, XS, L, M, S

WINDOWED, SNAPSHOT, VOLUME = "windowed", "snapshot", "volume"
GROUPS = {WINDOWED: "klaviyo_extract", SNAPSHOT: "klaviyo_extract", VOLUME: "klaviyo_volume"}


@dataclass(frozen=True)
class Entity:
    """One Klaviyo entity: its endpoint, its table, and how it loads."""

    endpoint: Endpoint
    kind: (
        str  # WINDOWED (daily partitions on its timestamp), SNAPSHOT (no timestamp: whole), VOLUME (streamed)
    )
    table: str
    description: str
    freshness: dt.timedelta
    key: tuple[str, ...] = ("account_id", "id")
    guard: str | None = "updated_date"  # an older copy never overwrites a newer one (None: immutable)
    cursor_column: str = "updated_date"  # the column the endpoint's timestamp lands in (the watermark's)
    sortable: bool = True  # the API sorts by the timestamp (newest first: one request finds the newest)
    include: tuple[str, ...] = ()  # related resources asked for beside each page
    included_tables: tuple[
        str, ...
    ] = ()  # included types that land in their own table, in the same transaction
    opt_in_columns: tuple[
        str, ...
    ] = ()  # filled only when the `additional-fields` value of that name is asked
    streaming: bool = False  # batches commit on their own (flat memory)
    batch_rows: int = 5_000
    fetch_workers: int = 1  # threads reading sub-windows of a closed window at once
    month_partitions_on: str | None = None  # monthly partitions of the table, made on demand
    soft_delete: bool = True  # rows Klaviyo no longer lists get deleted_at (never a hard delete)
    required: tuple[str, ...] = ()  # nullable columns a loaded row must still have (a check fails otherwise)
    references: tuple[tuple[str, str], ...] = ()  # (column, table it names a row of), checked after each load

    @property
    def name(self) -> str:
        return self.endpoint.entity

    @property
    def cursor(self) -> str | None:
        """Klaviyo's timestamp attribute the entity is windowed on (None: a snapshot)."""
        return self.endpoint.updated_field

    @property
    def group(self) -> str:
        return GROUPS[self.kind]

    @property
    def partitioned(self) -> bool:
        return self.kind != SNAPSHOT

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Nullable columns every loaded row must have: `required`, else the guard's column (a row without
        it could never be overwritten by a newer copy)."""
        return self.required or ((self.guard,) if self.guard and self.cursor else ())

    @property
    def unique_by_key(self) -> bool:
        """Whether the primary key alone makes (account_id, id) unique (not for a key with more columns)."""
        return self.key == ("account_id", "id")

    def __post_init__(self) -> None:
        if (self.cursor is None) != (self.kind == SNAPSHOT):
            raise ValueError(f"{self.name}: a snapshot has no cursor, and every other entity has one")
        if self.included_tables and self.streaming:
            raise ValueError(f"{self.name}: included resources are loaded only by non-streaming entities")


CATALOGUE: dict[str, Entity] = {
    e.name: e
    for e in [
        Entity(
            Endpoint(
                "campaigns",
                "/api/campaigns",
                "campaign",
                100,
                M,
                "updated_at",
                {
                    "id": ops("any"),
                    "messages.channel": ops("equals"),
                    "name": ops("contains"),
                    "status": ops("any", "equals"),
                    "archived": ops("equals"),
                    "created_at": CMP,
                    "scheduled_at": CMP,
                    "updated_at": CMP,
                },
                archived_passes=True,
                channel_passes=("email", "sms", "mobile_push"),
            ),
            kind=WINDOWED,
            table="klaviyo_campaigns",
            description="Campaigns of every channel (email, sms, mobile_push), archived ones included, by updated_at; "
            "their messages (subject, sender, SMS and push bodies, send times) into klaviyo_campaign_messages.",
            freshness=dt.timedelta(hours=2),
            include=("campaign-messages",),
            included_tables=("campaign-message",),
        ),
        Entity(
            Endpoint(
                "flows",
                "/api/flows",
                "flow",
                50,
                S,
                "updated",
                {
                    "id": ops("any"),
                    "name": ops("contains", "ends-with", "equals", "starts-with"),
                    "status": ops("equals"),
                    "archived": ops("equals"),
                    "created": CMP | {"equals"},
                    "updated": CMP | {"equals"},
                    "trigger_type": ops("equals"),
                },
                archived_passes=True,
            ),
            kind=WINDOWED,
            table="klaviyo_flows",
            description="Flows, archived ones included, by updated.",
            freshness=dt.timedelta(hours=6),
        ),
        Entity(
            Endpoint(
                "forms",
                "/api/forms",
                "form",
                100,
                S,
                "updated_at",
                {
                    "id": ops("any", "equals"),
                    "name": ops("any", "contains", "equals"),
                    "ab_test": ops("equals"),
                    "created_at": CMP,
                    "updated_at": CMP,
                    "status": ops("equals"),
                },
            ),
            kind=WINDOWED,
            table="klaviyo_forms",
            description="Sign-up forms, by updated_at.",
            freshness=dt.timedelta(hours=6),
        ),
        Entity(
            Endpoint(
                "segments",
                "/api/segments",
                "segment",
                10,
                L,
                "updated",
                {
                    "name": ops("any", "equals"),
                    "id": ops("any", "equals"),
                    "created": ops("greater-than"),
                    "updated": ops("greater-than"),
                    "is_active": ops("any", "equals"),
                    "is_starred": ops("equals"),
                },
                field_tiers={"profile_count": XS},  # only on GET /api/segments/{id}
            ),
            kind=WINDOWED,
            table="klaviyo_segments",
            description="Segments, by updated (Klaviyo filters only greater-than: the upper bound is applied here).",
            freshness=dt.timedelta(hours=6),
        ),
        Entity(
            Endpoint(
                "lists",
                "/api/lists",
                "list",
                10,
                L,
                "updated",
                {
                    "name": ops("any", "equals"),
                    "id": ops("any", "equals"),
                    "created": ops("greater-than"),
                    "updated": ops("greater-than"),
                },
                field_tiers={"profile_count": XS},  # only on GET /api/lists/{id}
            ),
            kind=WINDOWED,
            table="klaviyo_lists",
            description="Lists, by updated (greater-than only, like segments).",
            freshness=dt.timedelta(hours=6),
        ),
        Entity(
            Endpoint(
                "metrics",
                "/api/metrics",
                "metric",
                None,
                M,
                "updated",
                {"integration.name": ops("equals"), "integration.category": ops("equals")},
            ),
            kind=WINDOWED,
            table="klaviyo_metrics",
            description="Metrics; Klaviyo cannot filter them by time, so the window is applied to `updated` here.",
            freshness=dt.timedelta(hours=26),
            sortable=False,
        ),
        Entity(
            Endpoint(
                "tags",
                "/api/tags",
                "tag",
                50,
                S,
                None,
                {"name": ops("contains", "ends-with", "equals", "starts-with")},
            ),
            kind=SNAPSHOT,
            table="klaviyo_tags",
            description="Tags: Klaviyo gives them no timestamp, so each run loads a full snapshot.",
            freshness=dt.timedelta(hours=26),
            sortable=False,
            include=("tag-group",),
        ),
        Entity(
            Endpoint(
                "tag_groups",
                "/api/tag-groups",
                "tag-group",
                25,
                S,
                None,
                {
                    "name": ops("contains", "ends-with", "equals", "starts-with"),
                    "exclusive": ops("equals"),
                    "default": ops("equals"),
                },
                scope="tags:read",
            ),
            kind=SNAPSHOT,
            table="klaviyo_tag_groups",
            description="Tag groups (what tags' tag_group_id names): no timestamp at Klaviyo, a snapshot each run.",
            freshness=dt.timedelta(hours=26),
            guard=None,  # no timestamp: a row is rewritten when its content differs
            sortable=False,
        ),
        Entity(
            Endpoint(
                "templates",
                "/api/templates",
                "template",
                10,
                L,
                "updated",
                {
                    "id": ops("any", "equals"),
                    "name": ops("any", "contains", "equals"),
                    "created": CMP | {"equals"},
                    "updated": CMP | {"equals"},
                },
            ),
            kind=WINDOWED,
            table="klaviyo_templates",
            description="Email templates (name, editor, HTML and text; what campaign messages' template_id names), "
            "by updated.",
            freshness=dt.timedelta(hours=26),
        ),
        Entity(
            Endpoint(
                "profiles",
                "/api/profiles",
                "profile",
                100,
                L,
                "updated",
                {
                    "id": ops("any", "equals"),
                    "email": ops("any", "equals"),
                    "phone_number": ops("any", "equals"),
                    "external_id": ops("any", "equals"),
                    "_kx": ops("equals"),
                    "created": ops("greater-than", "less-than"),
                    "updated": ops("greater-than", "less-than"),
                },
                field_tiers={"predictive_analytics": M},  # the spec: predictive analytics lowers it to M
            ),
            kind=VOLUME,
            table="klaviyo_profiles",
            description="Profiles by updated (greater-than/less-than only), streamed in batches into klaviyo_profiles.",
            freshness=dt.timedelta(hours=6),
            streaming=True,
            batch_rows=10_000,
            opt_in_columns=("subscriptions", "predictive_analytics"),
        ),
        Entity(
            Endpoint(
                "events",
                "/api/events",
                "event",
                1000,
                XL,
                "datetime",
                {
                    "metric_id": ops("equals"),
                    "profile_id": ops("equals"),
                    "profile": ops("has"),
                    "metric": ops("has"),
                    "datetime": CMP,
                    "timestamp": CMP,
                },
            ),
            kind=VOLUME,
            table="klaviyo_events",
            description="Events by datetime, streamed in batches into klaviyo_events (monthly partitions made on demand); "
            "incremental runs re-read the trailing days (Klaviyo's events are eventually consistent).",
            freshness=dt.timedelta(hours=2),
            include=("metric",),
            key=("account_id", "id", "datetime"),
            guard=None,  # immutable: a re-read writes only what differs
            cursor_column="datetime",
            streaming=True,
            batch_rows=10_000,
            month_partitions_on="datetime",
            fetch_workers=3,
            soft_delete=False,
            required=("metric_id",),
            references=(("metric_id", "klaviyo_metrics"),),
        ),
    ]
}

ENDPOINTS: dict[str, Endpoint] = {name: e.endpoint for name, e in CATALOGUE.items()}
WINDOWED_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == WINDOWED)
SNAPSHOT_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == SNAPSHOT)
VOLUME_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == VOLUME)
SMALL_ENTITIES = WINDOWED_ENTITIES + SNAPSHOT_ENTITIES  # read whole in one transaction
ALL_ENTITIES = tuple(CATALOGUE)
CHANGE_TRACKED = tuple(n for n, e in CATALOGUE.items() if e.kind != SNAPSHOT)
SORTS_BY_UPDATE = frozenset(n for n, e in CATALOGUE.items() if e.sortable and e.cursor)


def scope_for(path: str) -> str | None:
    """The key scope a request to this API path needs (from the tables above), or None when unknown."""
    parts = path.rstrip("/").split("/")
    if len(parts) < 3 or parts[1] != "api":
        return None
    collection = "/api/" + parts[2]
    if collection == ACCOUNTS_PATH:
        return ACCOUNTS_SCOPE
    for endpoint in ENDPOINTS.values():
        if endpoint.path == collection:
            return endpoint.scope
    for report in REPORT_ENDPOINTS.values():
        if report.path == collection:
            return report.scope
    return None
