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
# Read under each record of another entity that changed in the window (e.g. a flow's steps); under a snapshot
# entity (no timestamp: nothing says which records changed), under every live record of it, each run.
NESTED = "nested"
MEMBERS = "members"  # a list's or segment's members: read under every live record of `member_of`
GROUPS = {
    WINDOWED: "klaviyo_extract",
    SNAPSHOT: "klaviyo_extract",
    VOLUME: "klaviyo_volume",
    NESTED: "klaviyo_extract",
}
GROUPS[MEMBERS] = "klaviyo_volume"  # streamed like profiles (a segment can hold millions)
# Flow action types whose step sends a message (the spec's action definitions whose `data` holds a `message`, and
# the A/B and content experiments over them): only these have GET /api/flow-actions/{id}/flow-messages to read.
MESSAGE_ACTION_TYPES = (
    "send-email", "send-sms", "send-mobile-push", "send-webhook", "send-internal-alert", "send-whatsapp",
    "ab-test", "content-experiment",
)  # fmt: skip


@dataclass(frozen=True)
class Parent:
    """Where a nested entity is read: its endpoint's `{id}` is a row of `table`, and a run reads under the rows
    whose `entity` changed in its window (the entity's own rows, or, when `table` is loaded with the entity,
    rows whose `via` column names one); under a snapshot `entity`, under all its live rows. The nested entity's
    `column` names that row; `only` restricts the rows to those whose column holds one of the values (or is
    NULL: unknown is read)."""

    entity: str  # the catalogue entity whose changed (snapshot: live) records select what to read
    table: str  # the rows whose id fills the endpoint's {id}
    column: str  # the nested entity's column naming that row
    via: str | None = None  # when `table` is not the entity's own: its column naming the entity's row
    only: tuple[str, tuple[str, ...]] | None = None  # (column of `table`, values) to read under


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
    # Tables filled from each record's own attributes (no request of their own), replaced per record it loads.
    derived_tables: tuple[str, ...] = ()
    parent: Parent | None = None  # a NESTED entity: read under each changed record of another
    # MEMBERS: the entity whose every live record has members (lists, segments), its endpoint's `{id}`; and the
    # ids-only listing of a record's members, whose full pass finds the members that left.
    member_of: str | None = None
    id_listing: Endpoint | None = None

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
        # Members: one watermark per list or segment, not per day. A nested entity without a timestamp (read
        # under every record of a snapshot) is a snapshot too.
        return self.kind not in (SNAPSHOT, MEMBERS) and self.cursor is not None

    @property
    def lists_ids(self) -> bool:
        """Whether its endpoint lists resource identifiers alone (a `/relationships/` route: type and id, no
        attributes), e.g. the items of a catalog category."""
        return "/relationships/" in self.endpoint.path

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
        if self.kind != NESTED and (self.cursor is None) != (self.kind == SNAPSHOT):
            raise ValueError(
                f"{self.name}: a snapshot has no cursor, and every other entity but a nested one has one"
            )
        if self.included_tables and self.streaming:
            raise ValueError(f"{self.name}: included resources are loaded only by non-streaming entities")
        if (self.parent is None) != (self.kind != NESTED):
            raise ValueError(f"{self.name}: a nested entity names its parent, and only a nested entity does")
        members = self.kind == MEMBERS
        if (self.member_of is not None, self.id_listing is not None) != (members, members):
            raise ValueError(f"{self.name}: members name their groups and their id listing, and only they do")


# The filters of a list's or segment's members (get_profiles_for_list|segment and their id listings).
MEMBER_FILTERS = {
    "email": ops("any", "equals"),
    "phone_number": ops("any", "equals"),
    "push_token": ops("any", "equals"),
    "_kx": ops("equals"),
}

# The filters of a catalog item listing: the items themselves, and the ids of a category's items.
CATALOG_ITEM_FILTERS = {
    "ids": ops("any"),
    "category.id": ops("equals"),
    "title": ops("contains"),
    "published": ops("equals"),
}

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
            "their messages (subject, sender, SMS and push bodies, send times) into klaviyo_campaign_messages, "
            "the lists and segments each is sent to or excludes (its `audiences`) into klaviyo_campaign_audiences.",
            freshness=dt.timedelta(hours=2),
            include=("campaign-messages",),
            included_tables=("campaign-message",),
            derived_tables=("campaign_audiences",),
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
            description="Flows, archived ones included, by updated; their steps (`include=flow-actions`: type, "
            "status, settings, definition) into klaviyo_flow_actions.",
            freshness=dt.timedelta(hours=6),
            include=("flow-actions",),
            included_tables=("flow-action",),
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
        Entity(
            Endpoint(
                "flow_messages",
                "/api/flow-actions/{id}/flow-messages",  # get_flow_action_messages: 50 a page, S tier
                "flow-message",
                50,
                S,
                "updated",
                {
                    "id": ops("any"),
                    "name": ops("contains", "ends-with", "equals", "starts-with"),
                    "created": CMP | {"equals"},
                    "updated": CMP | {"equals"},
                },
                scope="flows:read",
            ),
            kind=NESTED,
            table="klaviyo_flow_messages",
            description="The messages of each flow step that sends one (channel, name, subject, preview, sender, "
            "SMS and push bodies, template), read per step of the flows that changed in the window.",
            freshness=dt.timedelta(hours=6),
            parent=Parent(
                "flows",
                "klaviyo_flow_actions",
                "flow_action_id",
                via="flow_id",
                only=("action_type", MESSAGE_ACTION_TYPES),
            ),
            references=(("flow_action_id", "klaviyo_flow_actions"), ("flow_id", "klaviyo_flows")),
        ),
        Entity(
            Endpoint(
                "form_versions",
                "/api/forms/{id}/form-versions",  # get_versions_for_form: 20 a page by default, 100 at most, S
                "form-version",
                100,
                S,
                "updated_at",
                {
                    "form_type": ops("any", "equals"),
                    "status": ops("equals"),
                    "updated_at": CMP,
                    "created_at": CMP,
                },
                scope="forms:read",
            ),
            kind=NESTED,
            table="klaviyo_form_versions",
            description="Each form's versions (A/B variations, type, status), read per form that changed in the "
            "window.",
            freshness=dt.timedelta(hours=6),
            parent=Parent("forms", "klaviyo_forms", "form_id"),
            references=(("form_id", "klaviyo_forms"),),
        ),
        *(
            Entity(
                # get_profiles_for_list / get_profiles_for_segment: 20 a page by default, 100 at most, L tier;
                # sort only joined_group_at; `fields[profile]` may name joined_group_at alone. Scopes: the
                # group's and profiles:read. The segment route alone can filter by profile_id.
                Endpoint(
                    f"{kind}_members",
                    f"/api/{kind}s/{{id}}/profiles",
                    "profile",
                    100,
                    L,
                    "joined_group_at",
                    {**member_filters, "joined_group_at": CMP},
                    scope=f"{kind}s:read",
                ),
                kind=MEMBERS,
                table=f"klaviyo_{kind}_members",
                description=f"The members of every {kind} (profile, joined_group_at), streamed in batches: "
                f"incremental on joined_group_at with a watermark per {kind}; members a periodic full listing of "
                f"the ids no longer finds get left_at. Also Klaviyo's profile_count into klaviyo_{kind}s.member_count.",
                freshness=dt.timedelta(hours=6),
                key=("account_id", f"{kind}_id", "profile_id"),
                guard="joined_group_at",
                cursor_column="joined_group_at",
                streaming=True,
                batch_rows=10_000,
                soft_delete=False,  # members leave (left_at), they are not deleted
                required=("joined_group_at",),
                references=((f"{kind}_id", f"klaviyo_{kind}s"), ("profile_id", "klaviyo_profiles")),
                member_of=f"{kind}s",
                # get_profile_ids_for_list / _segment: ids only; the same 100 a page and L tier as the members.
                id_listing=Endpoint(
                    f"{kind}_member_ids",
                    f"/api/{kind}s/{{id}}/relationships/profiles",
                    "profile",
                    100,
                    L,
                    None,
                    {**member_filters, "joined_group_at": CMP},
                    scope=f"{kind}s:read",
                ),
            )
            for kind, member_filters in (
                ("list", MEMBER_FILTERS),
                ("segment", {"profile_id": ops("any", "equals"), **MEMBER_FILTERS}),
            )
        ),
        # -- catalogs (spec 2026-07-15: get_catalog_items, get_catalog_categories, get_item_ids_for_catalog_category;
        # every catalog route 100 a page at most, XL tier 350/s 3500/m, scope catalogs:read). None of their
        # filters takes a timestamp (items: ids, category.id, title, published; categories: ids, item.id, name)
        # and they sort only by `created`: snapshots, guarded on Klaviyo's `updated`; what a listing no longer
        # has gets deleted_at from the reconciliation.
        Entity(
            Endpoint(
                "catalog_items",
                "/api/catalog-items",
                "catalog-item",
                100,
                XL,
                None,
                CATALOG_ITEM_FILTERS,
                scope="catalogs:read",
            ),
            kind=SNAPSHOT,
            table="klaviyo_catalog_items",
            description="Catalog items (title, price, URL, images, published), a snapshot each run (Klaviyo "
            "cannot filter them by time); their variants come in the same responses (`include=variants`) into "
            "klaviyo_catalog_variants.",
            freshness=dt.timedelta(hours=26),
            sortable=False,
            # Variants with their items: `include=variants` adds no request, where GET /api/catalog-variants
            # would add a page per 100 variants; the items' `variants` linkage then lists every variant an item
            # has, so a variant it no longer lists is soft-deleted in the same transaction.
            include=("variants",),
            included_tables=("catalog-variant",),
        ),
        Entity(
            Endpoint(
                "catalog_categories",
                "/api/catalog-categories",
                "catalog-category",
                100,
                XL,
                None,
                {"ids": ops("any"), "item.id": ops("equals"), "name": ops("contains")},
                scope="catalogs:read",
            ),
            kind=SNAPSHOT,
            table="klaviyo_catalog_categories",
            description="Catalog categories (name, external id), a snapshot each run (no time filter at Klaviyo).",
            freshness=dt.timedelta(hours=26),
            sortable=False,
        ),
        Entity(
            # Which items each category holds, read as ids under every live category, 100 a page. The cheapest
            # way the spec offers: the items listing has no categories relationship (its only include is
            # `variants`); the categories listing's `items` linkage is optional in the spec and unbounded, so
            # it is not relied on; GET /api/catalog-items/{id}/relationships/categories costs a request per item
            # where this costs one per category (plus one per further 100 items), in the same XL tier.
            Endpoint(
                "catalog_item_categories",
                "/api/catalog-categories/{id}/relationships/items",
                "catalog-item",
                100,
                XL,
                None,
                CATALOG_ITEM_FILTERS,
                scope="catalogs:read",
            ),
            kind=NESTED,
            table="klaviyo_catalog_item_categories",
            description="Which catalog items each category holds (item, category), read under every live "
            "category each run; a link a category no longer lists (an item moved) gets deleted_at.",
            freshness=dt.timedelta(hours=26),
            key=("account_id", "category_id", "item_id"),
            guard=None,  # no timestamp: a row is rewritten when it differs (a removed link comes back)
            sortable=False,
            parent=Parent("catalog_categories", "klaviyo_catalog_categories", "category_id"),
            references=(
                ("item_id", "klaviyo_catalog_items"),
                ("category_id", "klaviyo_catalog_categories"),
            ),
        ),
        # -- coupons (spec 2026-07-15). get_coupons: no filter, no sort, 100 a page, L tier (75/s, 750/m), and a
        # coupon has no timestamp at all: a snapshot without a guard.
        Entity(
            Endpoint("coupons", "/api/coupons", "coupon", 100, L, None, {}, scope="coupons:read"),
            kind=SNAPSHOT,
            table="klaviyo_coupons",
            description="Coupons (external id, description, low-balance monitor), a snapshot each run (Klaviyo "
            "gives coupons no timestamp); their codes: klaviyo/coupon_codes.",
            freshness=dt.timedelta(hours=26),
            guard=None,  # no timestamp: a row is rewritten when its content differs
            sortable=False,
        ),
        Entity(
            # get_coupon_codes_for_coupon: 100 a page, L tier, scope coupon-codes:read; filters on expires_at,
            # status, coupon.id and profile.id, none on a change time (a code has none: it is read whole, under
            # every live coupon, each run). GET /api/coupon-codes would need a coupon.id or profile.id filter
            # anyway (the spec makes `filter` required there).
            Endpoint(
                "coupon_codes",
                "/api/coupons/{id}/coupon-codes",
                "coupon-code",
                100,
                L,
                None,
                {
                    "expires_at": CMP,
                    "status": ops("equals"),
                    "coupon.id": ops("any", "equals"),
                    "profile.id": ops("any", "equals"),
                },
                scope="coupon-codes:read",
            ),
            kind=NESTED,
            table="klaviyo_coupon_codes",
            description="Each coupon's codes (unique code, status, expiry, the profile it is assigned to), read "
            "under every live coupon each run; a code a coupon no longer lists gets deleted_at.",
            freshness=dt.timedelta(hours=26),
            guard=None,  # no timestamp: a row is rewritten when it differs (e.g. a code used)
            sortable=False,
            required=("coupon_id",),
            parent=Parent("coupons", "klaviyo_coupons", "coupon_id"),
            references=(("coupon_id", "klaviyo_coupons"),),
        ),
    ]
}

for _entry in CATALOGUE.values():
    if _entry.parent is not None and (_entry.cursor is None) != (
        CATALOGUE[_entry.parent.entity].cursor is None
    ):
        raise ValueError(f"{_entry.name}: a nested entity has a cursor exactly when its parent has one")

ENDPOINTS: dict[str, Endpoint] = {name: e.endpoint for name, e in CATALOGUE.items()}
WINDOWED_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == WINDOWED)
SNAPSHOT_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == SNAPSHOT)
VOLUME_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == VOLUME)
NESTED_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == NESTED)
MEMBER_ENTITIES = tuple(n for n, e in CATALOGUE.items() if e.kind == MEMBERS)
# Nested entities whose endpoint lists ids alone (links between records, e.g. a category's items).
ID_LISTINGS = tuple(n for n, e in CATALOGUE.items() if e.kind == NESTED and e.lists_ids)
SMALL_ENTITIES = WINDOWED_ENTITIES + SNAPSHOT_ENTITIES  # read whole in one transaction
ALL_ENTITIES = tuple(CATALOGUE)
# Nested entities follow their parent (its job runs them, its newest update is theirs): not tracked on their own.
# Members are read under every list and segment each run (their join times cannot be asked of Klaviyo at once).
CHANGE_TRACKED = tuple(n for n, e in CATALOGUE.items() if e.kind not in (SNAPSHOT, NESTED, MEMBERS))
SORTS_BY_UPDATE = frozenset(n for n, e in CATALOGUE.items() if e.sortable and e.cursor)


def nested_under(entity: str) -> tuple[str, ...]:
    """The nested entities read under the changed records of `entity` (e.g. flows: flow_messages)."""
    return tuple(n for n, e in CATALOGUE.items() if e.parent is not None and e.parent.entity == entity)


def scope_for(path: str) -> str | None:
    """The key scope a request to this API path needs (from the tables above), or None when unknown."""
    parts = path.rstrip("/").split("/")
    if len(parts) < 3 or parts[1] != "api":
        return None
    collection = "/api/" + parts[2]
    if collection == ACCOUNTS_PATH:
        return ACCOUNTS_SCOPE
    # A route under a record (/api/coupons/{id}/coupon-codes) may need a scope of its own: its template first.
    for endpoint in ENDPOINTS.values():
        template = endpoint.path.split("/")
        if len(template) == len(parts) and all(
            t in ("{id}", p) for t, p in zip(template, parts, strict=True)
        ):
            return endpoint.scope
    for endpoint in ENDPOINTS.values():
        # A nested endpoint (/api/flow-actions/{id}/flow-messages) answers for its whole collection.
        if endpoint.path == collection or endpoint.path.startswith(collection + "/"):
            return endpoint.scope
    for report in REPORT_ENDPOINTS.values():
        if report.path == collection:
            return report.scope
    return None
