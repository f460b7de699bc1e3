"""A seeded fake Klaviyo account.

Small entities (campaigns, flows, forms, segments, lists, metrics, tags, tag groups, templates) are
generated once and held as JSON:API resources. Profiles and events are computed from their index on demand,
so an account of ten million events holds nothing per event: event timestamps rise with the index (a window
is found by bisection) and ids are bijective scrambles of the index (a GET by id inverts them).
Catalogs and coupons (items, variants, categories, coupons, codes) are held too, in `Account.commerce`, which
klaviyo_sim/commerce.py builds the first time they are read (`commerce.store(account)`); the scales size them
(catalog_items, catalog_categories, coupons, coupon_codes a coupon).
"""

from __future__ import annotations

import bisect
import datetime as dt
import html
import random
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from klaviyo_sim.common import (
    BASE62,
    CROCKFORD,
    b62,
    crockford,
    hash_str,
    iso,
    mix64,
    parse_time,
    unb62,
    uncrockford,
)
from klaviyo_sim.members import Memberships
from klaviyo_sim.reports import campaign_counts
from klaviyo_sim.structure import NESTED_KINDS, Structure

if TYPE_CHECKING:
    from klaviyo_sim.commerce import Commerce

UTC = dt.UTC

SCALES: dict[str, dict[str, int]] = {
    "small": dict(
        campaigns=40,
        flows=24,
        forms=12,
        segments=25,
        lists=14,
        tags=20,
        tag_groups=4,
        templates=30,
        profiles=400,
        events=4000,
        catalog_items=30,
        catalog_categories=6,
        coupons=5,
        coupon_codes=10,
    ),
    "medium": dict(
        campaigns=600,
        flows=200,
        forms=120,
        segments=300,
        lists=150,
        tags=120,
        tag_groups=8,
        templates=250,
        profiles=50_000,
        events=500_000,
        catalog_items=400,
        catalog_categories=25,
        coupons=15,
        coupon_codes=40,
    ),
    "large": dict(
        campaigns=2000,
        flows=400,
        forms=300,
        segments=800,
        lists=400,
        tags=300,
        tag_groups=20,
        templates=900,
        profiles=1_000_000,
        events=10_000_000,
        catalog_items=2000,
        catalog_categories=80,
        coupons=40,
        coupon_codes=200,
    ),
}

METRICS = [
    ("Placed Order", "Shopify", "ecommerce"),
    ("Ordered Product", "Shopify", "ecommerce"),
    ("Started Checkout", "Shopify", "ecommerce"),
    ("Viewed Product", "Klaviyo", "web"),
    ("Active on Site", "Klaviyo", "web"),
    ("Received Email", "Klaviyo", "email"),
    ("Opened Email", "Klaviyo", "email"),
    ("Clicked Email", "Klaviyo", "email"),
    ("Bounced Email", "Klaviyo", "email"),
    ("Unsubscribed", "Klaviyo", "email"),
    ("Received SMS", "Klaviyo", "sms"),
    ("Subscribed to List", "Klaviyo", "list"),
]
# Metrics whose events carry a monetary value ("Active on Site" cannot be a conversion metric for values
# reports: reports.REFUSED_CONVERSION_METRICS).
VALUE_METRICS = {"Placed Order", "Ordered Product", "Started Checkout"}

ODD_NAMES = [
    "Ünïcödé Spëcial — 🎉 Sale",
    'it\'s a "quoted" name',
    "Hebrew עברית / Arabic العربية",
    "日本語のキャンペーン",
    "   leading and trailing spaces   ",
    "a" * 300,
    "semi;colon, comma (paren) [bracket]",
]
# The shapes Klaviyo is seen to send event datetimes in (T or space, Z or +00:00, with or without microseconds).
DATETIME_SHAPES = [
    "%Y-%m-%dT%H:%M:%S+00:00",
    "%Y-%m-%d %H:%M:%S+00:00",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%d %H:%M:%S.%f+00:00",
]
SUBJECTS = ["Spring sale", "New arrivals", "Last chance", "Just for you", "Back in stock", "Ends tonight 🎉"]
CAMPAIGN_STATUSES = ["Sent", "Sent", "Sent", "Draft", "Scheduled", "Cancelled", "Sending", "Variations Sent"]
FLOW_STATUSES = ["live", "live", "draft", "manual"]
TRIGGERS = ["Added to List", "Date Based", "Low Inventory", "Metric", "Price Drop", "Unconfigured"]
FIRST = ["Ada", "Grace", "Linus", "Zoë", "José", "Mei", "Øyvind", "Aaliyah", "Chidi", "Sasha", "李", "Ольга"]
LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Müller",
    "García",
    "Nakamura",
    "O'Brien",
    "Nguyen",
    "Smith",
    "Ivanova",
]
CITIES = [("Boston", "US", "MA"), ("Berlin", "DE", None), ("São Paulo", "BR", "SP"), ("Tokyo", "JP", None)]
# Templates: Klaviyo's four editors (drag-and-drop the most common), and the names of tag groups; the first
# tag group is the account's default one (every account has exactly one).
EDITOR_TYPES = [
    "SYSTEM_DRAGGABLE",
    "CODE",
    "SYSTEM_DRAGGABLE",
    "USER_DRAGGABLE",
    "SYSTEM_DRAGGABLE",
    "SIMPLE",
]
TAG_GROUP_NAMES = [
    "Default",
    "Season",
    "Channel",
    "Promotion type",
    "Région / Region 🌍",
    "Product line",
    "Audience",
    "Lifecycle stage",
]


# Bijective scrambles: index -> id number, and back.
EVENT_MOD = 62**10
EVENT_MUL = 0x5DEECE66D  # odd and not a multiple of 31: invertible mod 62**10
PROFILE_MOD = 1 << 80
PROFILE_MUL = 0x9E3779B97F4A7C15F39D  # odd: invertible mod 2**80


@dataclass
class Resource:
    """A held JSON:API resource plus the internal values filters and sorts read."""

    type: str
    id: str
    attributes: dict[str, Any]
    relationships: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    internal: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProfileOverride:
    updated: dt.datetime
    first_name: str | None = None
    deleted: bool = False


class Account:
    """The seeded account. Thread-safe for the mutation hooks."""

    def __init__(
        self,
        seed: int = 7,
        scale: str = "small",
        anchor: dt.datetime | None = None,
        history_days: int = 120,
        profiles: int | None = None,
        events: int | None = None,
        account_id: str | None = None,
        future_events: int = 3,
        timezone: str = "UTC",
        omit_relationship_data: bool = False,
        multi_day_sends: bool = True,
        webhook_access: bool = True,
    ):
        counts = dict(SCALES[scale])
        if profiles is not None:
            counts["profiles"] = profiles
        if events is not None:
            counts["events"] = events
        self.seed = seed
        self.counts = counts
        # The account's (company's) time zone, an IANA name: reports read timeframes as wall-clock times in it
        # and bucket days by its calendar.
        try:
            self.zone = zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        self.timezone = timezone
        # A share of events (every 5th) omit `data` in their metric and profile relationships, and a share of
        # campaign messages in their template relationship (the spec marks relationship data optional).
        self.omit_relationship_data = omit_relationship_data
        # Every third campaign with a send (the 6th, 9th, 12th...) has a send spanning 2-3 local days: a
        # throttled or a local-time send. Off: every send is one day (as before).
        self.multi_day_sends = multi_day_sends
        # Events dated after the anchor (clock skew, scheduled sends): they follow the history, in order.
        self.future_events = future_events
        self.total_events = counts["events"] + future_events
        today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        self.anchor = (anchor or today).astimezone(UTC)
        self.history_start = self.anchor - dt.timedelta(days=history_days)
        self.span = (self.anchor - self.history_start).total_seconds()
        self.account_id = account_id or b62(mix64(seed) % 62**6, 6)
        self.lock = threading.RLock()
        self.rng = random.Random(seed)
        self.metrics = self._make_metrics()
        # A custom metric's id: not a metric of /api/metrics, and refused by the events' metric_id filter.
        self.custom_metric_id = next(
            cid
            for k in range(100)
            if (cid := self._short_id("custom-metric", k)) not in {m.id for m in self.metrics}
        )
        self.tag_groups = self._make_tag_groups(counts.get("tag_groups", 1))
        self.tags = self._make_tags(counts["tags"])
        self.templates = self._make_templates(counts.get("templates", 0))
        self.lists = self._make_lists(counts["lists"])
        self.segments = self._make_segments(counts["segments"])
        self.flows = self._make_flows(counts["flows"])
        self.forms = self._make_forms(counts["forms"])
        # Flows' steps and their messages, forms' versions (klaviyo_sim/structure.py), and the hooks editing them.
        self.structure = Structure(self, Resource)
        self.flow_actions, self.flow_messages = self.structure.flow_steps()
        self.form_versions = self.structure.form_versions()
        self.campaign_messages: list[Resource] = []
        self.campaigns = self._make_campaigns(counts["campaigns"])
        self.collections: dict[str, list[Resource]] = {
            "campaign": self.campaigns,
            "flow": self.flows,
            "form": self.forms,
            "segment": self.segments,
            "list": self.lists,
            "metric": self.metrics,
            "tag": self.tags,
            "tag-group": self.tag_groups,
            "template": self.templates,
            "flow-action": self.flow_actions,
            "flow-message": self.flow_messages,
            "form-version": self.form_versions,
        }
        self.by_id: dict[tuple[str, str], Resource] = {
            (r.type, r.id): r for items in [*self.collections.values(), self.campaign_messages] for r in items
        }
        self.profile_overrides: dict[int, ProfileOverride] = {}
        # Who is in each list and segment since when: computed per profile index, changed by its hooks.
        self.memberships = Memberships(self)
        # Late attribution: extra conversions (flows, campaigns), submits (forms) or members added (segments)
        # on a day, as Klaviyo revises its reports for days after a send.
        self.stat_revisions: dict[tuple[str, str, dt.date], int] = {}
        self._metric_ids = [m.id for m in self.metrics]
        self._event_offset = mix64(seed ^ 0xE7E7) % EVENT_MOD
        self._value_metric = {m.id for m in self.metrics if m.attributes["name"] in VALUE_METRICS}
        # Events imported late (import_events): few, held; they take the indices after the seeded ones.
        self.imported_timestamps: list[int] = []
        self._imported_keys: list[tuple[int, int, int]] = []  # (timestamp, 1, index), sorted
        # -- system webhooks (klaviyo_sim/webhooks.py) --
        # Klaviyo opens its Webhooks API to Advanced KDP accounts and app partners only: False answers it 403.
        self.webhook_access = webhook_access
        # When each event was created by a hook (id -> time.time()), for creation-to-warehouse latency, and the
        # callbacks told of new events' ids (the webhook deliverer).
        self.event_created_at: dict[str, float] = {}
        self.event_listeners: list[Callable[[list[str]], None]] = []
        # -- end system webhooks --
        # Catalogs and coupons: built by klaviyo_sim/commerce.py (commerce.store) the first time they are read.
        self.commerce: Commerce | None = None

    def local_day(self, t: dt.datetime) -> dt.date:
        """The account's calendar day of an instant."""
        return t.astimezone(self.zone).date()

    def campaign_send_days(self, campaign_id: str) -> list[dt.date]:
        """The local days a campaign's send went out on: one, or 2-3 for a multi-day send; none if unsent."""
        with self.lock:
            campaign = self.by_id.get(("campaign", campaign_id))
        if campaign is None:
            return []  # unknown or deleted
        times = campaign.internal.get("send_times")
        if times is None:
            send = campaign.attributes.get("send_time")
            times = [parse_time(send)] if send else []
        return sorted({self.local_day(t) for t in times})

    def campaign_whole_send(self, campaign_id: str) -> dict[str, float] | None:
        """A campaign's base counts over its whole send (every send day), as a campaign values report whose
        timeframe covers the send gives them (pass them to reports.message_statistics); None if unsent."""
        return campaign_counts(self, campaign_id)

    # -- small entities ----------------------------------------------------------------------------
    def _time_in_history(self, lo: float = 0.0, hi: float = 1.0) -> dt.datetime:
        frac = self.rng.uniform(lo, hi)
        return (self.history_start + dt.timedelta(seconds=int(self.span * frac))).replace(microsecond=0)

    def _short_id(self, kind: str, i: int) -> str:
        return b62(mix64(hash_str(f"{self.seed}:{kind}:{i}")) % 62**6, 6)

    def _name(self, base: str, i: int) -> str:
        if i % 9 == 4:
            return ODD_NAMES[(i // 9) % len(ODD_NAMES)]
        return f"{base} {i + 1}"

    def _stamps(self, rng: random.Random | None = None) -> tuple[dt.datetime, dt.datetime]:
        """(created, updated) in the history; `rng` for entities with their own stream (see _own_rng)."""
        rng = rng or self.rng
        created = (self.history_start + dt.timedelta(seconds=int(self.span * rng.uniform(0.0, 0.8)))).replace(
            microsecond=0
        )
        updated = created + dt.timedelta(
            seconds=int(rng.uniform(0, (self.anchor - created).total_seconds() - 1))
        )
        return created, updated

    def _own_rng(self, kind: str) -> random.Random:
        """A random stream of one entity's own: entities added later leave the others' values as they were."""
        return random.Random(mix64(hash_str(f"{self.seed}:{kind}")))

    def _make_metrics(self) -> list[Resource]:
        out = []
        for i, (name, integration, category) in enumerate(METRICS):
            created = self.history_start - dt.timedelta(days=400 - i)
            updated = created + dt.timedelta(days=30 + i)
            mid = self._short_id("metric", i)
            out.append(
                Resource(
                    "metric",
                    mid,
                    {
                        "name": name,
                        "created": created.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
                        "updated": updated.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
                        "integration": {
                            "object": "integration",
                            "id": self._short_id("integration", hash_str(integration) % 1000),
                            "key": integration.lower(),
                            "name": integration,
                            "category": category,
                        },
                    },
                )
            )
        return out

    def _make_tag_groups(self, n: int) -> list[Resource]:
        """Tag groups: the first is the default one (there is always one), every third is exclusive."""
        out = []
        for i in range(max(1, n)):
            gid = str(
                uuid.UUID(
                    int=mix64(hash_str(f"{self.seed}:tag-group:{i}")) << 64 | mix64(i + 7919), version=4
                )
            )
            name = TAG_GROUP_NAMES[i] if i < len(TAG_GROUP_NAMES) else f"Tag group {i + 1}"
            out.append(Resource("tag-group", gid, {"name": name, "exclusive": i % 3 == 2, "default": i == 0}))
        return out

    def _make_tags(self, n: int) -> list[Resource]:
        """Tags, each in one tag group (in turn)."""
        out = []
        for i in range(n):
            tid = str(uuid.UUID(int=mix64(hash_str(f"{self.seed}:tag:{i}")) << 64 | mix64(i), version=4))
            name = self._name("Tag", i) if i % 9 != 4 else f"tag-{ODD_NAMES[(i // 9) % len(ODD_NAMES)][:40]}"
            group = self.tag_groups[i % len(self.tag_groups)].id
            out.append(
                Resource(
                    "tag",
                    tid,
                    {"name": name},
                    {"tag-group": [("tag-group", group)]},
                    internal={"tag_group": group},
                )
            )
        return out

    def _tag_links(self) -> list[tuple[str, str]]:
        picked = self.rng.sample(self.tags, k=min(len(self.tags), self.rng.randint(0, 2)))
        # A resource carries at most one tag of an exclusive tag group.
        exclusive = {g.id for g in self.tag_groups if g.attributes["exclusive"]}
        seen: set[str] = set()
        out = []
        for t in picked:
            group = t.internal["tag_group"]
            if group in exclusive and group in seen:
                continue
            seen.add(group)
            out.append(("tag", t.id))
        return out

    def _make_templates(self, n: int) -> list[Resource]:
        """Email templates: mostly drag-and-drop (with a definition), some custom HTML, hybrid or rich text;
        odd names and a shared name; `updated` spread over the history (every 7th never edited)."""
        rng = self._own_rng("templates")
        out = []
        for i in range(n):
            tid = self._short_id("template", i)
            created, updated = self._stamps(rng)
            if i % 7 == 0:
                updated = created
            editor = EDITOR_TYPES[i % len(EDITOR_TYPES)]
            name = "Untitled template" if i % 13 == 12 else self._name("Email Template", i)
            subject = SUBJECTS[i % len(SUBJECTS)]
            shown = html.escape(name)
            body = (
                '<!DOCTYPE html><html><head><meta charset="utf-8"><title>'
                f"{shown}</title></head><body><h1>{html.escape(subject)}</h1>"
                "<p>Hello {{ first_name|default:'there' }},</p>"
                f'<p><a href="https://example.com/shop?utm_campaign=template-{i}">Shop now</a></p>'
                "<p>{% unsubscribe %}</p></body></html>"
            )
            out.append(
                Resource(
                    "template",
                    tid,
                    {
                        "name": name,
                        "editor_type": editor,
                        "html": body,
                        "text": None
                        if i % 4 == 1
                        else f"{subject}\n\nHello,\nShop now: https://example.com/shop",
                        "amp": (
                            '<!doctype html><html ⚡4email><head><meta charset="utf-8"></head>'
                            f"<body>{html.escape(subject)}</body></html>"
                            if i % 10 == 3
                            else None
                        ),
                        "created": iso(created),
                        "updated": iso(updated),
                    },
                    internal={
                        "definition": self._template_definition(tid, i)
                        if editor == "SYSTEM_DRAGGABLE"
                        else None
                    },
                )
            )
        return out

    @staticmethod
    def _template_definition(tid: str, i: int) -> dict[str, Any]:
        """A drag-and-drop template's definition: one section, one row, one column, one text block, and one
        of each style type (as the spec's TemplateDefinition asks)."""
        heading = {"color": "#222222", "font_family": "Helvetica", "font_weight": "700", "text_align": "left"}
        return {
            "id": f"{tid}-definition",
            "template_id": tid,
            "body": {
                "id": f"{tid}-body",
                "properties": {"id": None, "css_class": None},
                "styles": {"background_color": "#F7F7F7", "width": 600},
                "sections": [
                    {
                        "id": f"{tid}-section-1",
                        "content_type": "section",
                        "type": "section",
                        "data": {
                            "properties": {"is_ai_generated": False, "is_prebuilt_content": i % 5 == 0},
                            "display_options": {"show_on": "all"},
                            "styles": {"background_color": "#FFFFFF"},
                        },
                        "rows": [
                            {
                                "id": f"{tid}-row-1",
                                "data": {"styles": {"column_layout": "1-column-full-width"}},
                                "columns": [
                                    {
                                        "id": f"{tid}-column-1",
                                        "blocks": [
                                            {
                                                "id": f"{tid}-block-1",
                                                "content_type": "block",
                                                "type": "text",
                                                "data": {
                                                    "content": f"<p>{SUBJECTS[i % len(SUBJECTS)]}</p>",
                                                    "display_options": {"show_on": "all"},
                                                    "styles": {"font_size": 16, "line_height": 1.5},
                                                },
                                            }
                                        ],
                                    }
                                ],
                            }
                        ],
                    }
                ],
            },
            "styles": [
                {
                    "style_type": "base-styles",
                    "properties": {"mobile_optimizations": True},
                    "styles": {"content_background_color": "#FFFFFF"},
                },
                {"style_type": "text-styles", "styles": {"color": "#333333", "font_size": 14}},
                {"style_type": "heading-1-styles", "styles": {**heading, "font_size": 28}},
                {"style_type": "heading-2-styles", "styles": {**heading, "font_size": 22}},
                {"style_type": "heading-3-styles", "styles": {**heading, "font_size": 18}},
                {"style_type": "heading-4-styles", "styles": {**heading, "font_size": 16}},
                {"style_type": "link-styles", "styles": {"color": "#0066CC", "text_decoration": "underline"}},
                {
                    "style_type": "mobile-styles",
                    "properties": {"mobile_padding_override": False},
                    "styles": {"mobile_padding_top": 10, "mobile_padding_bottom": 10},
                },
            ],
        }

    def _make_lists(self, n: int) -> list[Resource]:
        out = []
        for i in range(n):
            created, updated = self._stamps()
            out.append(
                Resource(
                    "list",
                    self._short_id("list", i),
                    {
                        "name": self._name("Newsletter", i),
                        "created": iso(created),
                        "updated": iso(updated),
                        "opt_in_process": self.rng.choice(["double_opt_in", "single_opt_in", None]),
                    },
                    {"tags": self._tag_links()},
                )
            )
            # Drawn where a static profile_count used to be (the count now follows the members): it keeps every
            # value drawn after it as it was.
            self.rng.randint(0, 50_000)
        return out

    def _make_segments(self, n: int) -> list[Resource]:
        out = []
        for i in range(n):
            created, updated = self._stamps()
            out.append(
                Resource(
                    "segment",
                    self._short_id("segment", i),
                    {
                        "name": self._name("Engaged", i) if i % 11 != 10 else None,
                        "definition": {
                            "condition_groups": [
                                {
                                    "conditions": [
                                        {
                                            "type": "profile-metric",
                                            "metric_id": self.metrics[i % len(self.metrics)].id,
                                            "measurement": "count",
                                            "measurement_filter": {
                                                "type": "numeric",
                                                "operator": "greater-than",
                                                "value": i % 5,
                                            },
                                            "timeframe_filter": {
                                                "type": "date",
                                                "operator": "in-the-last",
                                                "unit": "day",
                                                "quantity": 30 + i,
                                            },
                                            "metric_filters": None,
                                        }
                                    ]
                                }
                            ]
                        },
                        "created": iso(created),
                        "updated": iso(updated),
                        "is_active": i % 7 != 3,
                        "is_processing": i % 13 == 5,
                        "is_starred": i % 4 == 0,
                    },
                    {"tags": self._tag_links()},
                )
            )
            # Drawn where a static profile_count used to be (the count now follows the members): it keeps every
            # value drawn after it as it was.
            self.rng.randint(0, 80_000)
        return out

    def _make_flows(self, n: int) -> list[Resource]:
        out = []
        for i in range(n):
            created, updated = self._stamps()
            out.append(
                Resource(
                    "flow",
                    self._short_id("flow", i),
                    {
                        "name": self._name("Welcome Series", i),
                        "status": FLOW_STATUSES[i % len(FLOW_STATUSES)],
                        "archived": i % 6 == 5,
                        "created": iso(created),
                        "updated": iso(updated),
                        "trigger_type": TRIGGERS[i % len(TRIGGERS)],
                    },
                    {
                        "tags": self._tag_links(),
                        "flow-actions": [("flow-action", str(100000 + i * 10 + k)) for k in range(1 + i % 3)],
                    },
                )
            )
        return out

    def _make_forms(self, n: int) -> list[Resource]:
        out = []
        for i in range(n):
            created, updated = self._stamps()
            out.append(
                Resource(
                    "form",
                    self._short_id("form", i),
                    {
                        "name": self._name("Signup Popup", i),
                        "status": "live" if i % 3 else "draft",
                        "ab_test": i % 5 == 2,
                        "created_at": iso(created).replace("+00:00", "Z"),
                        "updated_at": iso(updated).replace("+00:00", "Z"),
                    },
                    {
                        "form-versions": [  # two when the form runs an A/B test
                            ("form-version", str(1_000_000 + i * 7 + k))
                            for k in range(2 if i % 5 == 2 else 1 + i % 2)
                        ]
                    },
                )
            )
        return out

    def _make_campaigns(self, n: int) -> list[Resource]:
        out = []
        channels = ["email", "email", "email", "sms", "mobile_push"]
        sends = 0  # campaigns with a send so far
        for i in range(n):
            channel = channels[i % len(channels)]
            created, updated = self._stamps()
            status = CAMPAIGN_STATUSES[i % len(CAMPAIGN_STATUSES)]
            send_time = None
            if status in ("Sent", "Sending", "Variations Sent", "Scheduled"):
                send_time = min(updated + dt.timedelta(hours=1 + i % 48), self.anchor + dt.timedelta(days=3))
            span, local_send = 1, False
            if send_time and self.multi_day_sends:
                # Every third send from the 6th spans local days: a local-time send (2 days), or a throttled
                # one whose batches go out a day apart (50 % a batch: 2 days, 33 %: 3 days).
                if sends % 3 == 2 and sends >= 5:
                    variant = (sends // 3) % 4
                    span, local_send = (2, True) if variant == 0 else (3 if variant % 2 else 2, False)
                sends += 1
            send_times = self._send_batches(send_time, span) if send_time else []
            strategy_kind = i % 4
            if span > 1 and send_time:
                if local_send:
                    strategy = {
                        "method": "static",
                        "datetime": iso(send_time),
                        "options": {"is_local": True, "send_past_recipients_immediately": False},
                    }
                else:
                    percentage = 50 if span == 2 else 33
                    strategy = {
                        "method": "throttled",
                        "datetime": iso(send_time),
                        "throttle_percentage": percentage,
                    }
            elif strategy_kind == 0 and send_time:
                # With multi-day sends on, a local-time send is one that spans days; otherwise every 8th.
                is_local = False if self.multi_day_sends else i % 8 == 0
                strategy = {
                    "method": "static",
                    "datetime": iso(send_time),
                    "options": {"is_local": is_local, "send_past_recipients_immediately": False},
                }
            elif strategy_kind == 1 and send_time:
                strategy = {"method": "throttled", "datetime": iso(send_time), "throttle_percentage": 20}
            elif strategy_kind == 2 and send_time:
                strategy = {"method": "smart_send_time", "date": send_time.strftime("%Y-%m-%d")}
            else:
                strategy = {"method": "immediate"}
            audiences_pool = self.lists + self.segments
            included = [a.id for a in self.rng.sample(audiences_pool, k=min(2, len(audiences_pool)))]
            if channel == "email":
                send_options = {"use_smart_sending": i % 2 == 0}
                tracking = {
                    "add_tracking_params": i % 3 == 0,
                    "custom_tracking_params": [{"type": "static", "value": "spring", "name": "utm_campaign"}]
                    if i % 3 == 0
                    else None,
                    "is_tracking_clicks": True,
                    "is_tracking_opens": i % 5 != 0,
                }
            elif channel == "sms":
                send_options = {"use_smart_sending": True}
                tracking = {"add_tracking_params": False, "custom_tracking_params": None}
            else:
                send_options = {"use_smart_sending": False}
                tracking = None
            cid = crockford(mix64(hash_str(f"{self.seed}:campaign:{i}")) << 16 | i, 26)[-26:]
            cid = "01" + cid[2:]
            message_id = "01" + crockford(mix64(i * 31 + 7), 24)
            self.campaign_messages.append(
                self._campaign_message(i, cid, message_id, channel, created, updated, send_times, strategy)
            )
            out.append(
                Resource(
                    "campaign",
                    cid,
                    {
                        "name": self._name(f"{channel.upper()} Campaign", i),
                        "status": status,
                        "archived": i % 7 == 6,
                        "audiences": {"included": included, "excluded": [] if i % 2 else None},
                        "send_options": send_options,
                        "tracking_options": tracking,
                        "send_strategy": strategy,
                        "created_at": iso(created),
                        "scheduled_at": iso(created + dt.timedelta(minutes=30)) if send_time else None,
                        "updated_at": iso(updated),
                        "send_time": iso(send_time) if send_time else None,
                    },
                    {
                        "campaign-messages": [("campaign-message", message_id)],
                        "tags": self._tag_links(),
                    },
                    {"messages.channel": channel, "send_times": send_times},
                )
            )
        return out

    def _send_batches(self, first: dt.datetime, span: int) -> list[dt.datetime]:
        """A send's batches: the first, then the same local wall-clock time on each following local day."""
        wall = first.astimezone(self.zone).replace(tzinfo=None)
        return [(wall + dt.timedelta(days=k)).replace(tzinfo=self.zone).astimezone(UTC) for k in range(span)]

    def _campaign_message(
        self,
        i: int,
        campaign_id: str,
        message_id: str,
        channel: str,
        created: dt.datetime,
        updated: dt.datetime,
        send_times: list[dt.datetime],
        strategy: dict,
    ) -> Resource:
        """A campaign's message: its definition by channel (content, and a label for email), send times."""
        subject = f"{SUBJECTS[i % len(SUBJECTS)]}: {self._name('offer', i)}"
        definition: dict[str, Any]
        relationships: dict[str, list[tuple[str, str]]] = {"campaign": [("campaign", campaign_id)]}
        if channel == "email":
            definition = {
                "channel": "email",
                "label": f"Email {i}",
                "content": {
                    "subject": subject,
                    "preview_text": None if i % 4 == 3 else f"Preview {i}",
                    "from_email": "store@example.com",
                    "from_label": "Simulated Store",
                    "reply_to_email": "help@example.com" if i % 2 else None,
                    "cc_email": None,
                    "bcc_email": None,
                },
            }
            if self.templates:  # one of the account's templates
                pick = mix64(hash_str(f"{self.seed}:message-template:{i}")) % len(self.templates)
                relationships["template"] = [("template", self.templates[pick].id)]
        elif channel == "sms":
            definition = {
                "channel": "sms",
                "content": {"body": f"{subject} Reply STOP to opt out.", "media_url": None},
                "render_options": {
                    "shorten_links": True,
                    "add_org_prefix": True,
                    "add_info_link": True,
                    "add_opt_out_language": False,
                },
            }
        else:
            definition = {
                "channel": "mobile_push",
                "notification_type": "standard",
                "content": {"title": subject, "body": f"Open the app {i}", "dynamic_image": None},
                "kv_pairs": None,
                "options": {"play_sound": i % 2 == 0},
            }
        is_local = bool((strategy.get("options") or {}).get("is_local", False))
        return Resource(
            "campaign-message",
            message_id,
            {
                "definition": definition,
                "send_times": [{"datetime": iso(t), "is_local": is_local} for t in send_times],
                "created_at": iso(created),
                "updated_at": iso(updated),
            },
            relationships,
            # Every other email message omits its template linkage when omit_relationship_data is on.
            {"omit_template_data": self.omit_relationship_data and channel == "email" and i % 2 == 0},
        )

    # -- mutation hooks ------------------------------------------------------------------------------
    def _held(self, kind: str) -> list[Resource]:
        try:
            return self.collections[kind]
        except KeyError:
            raise ValueError(
                f"{kind!r} is not a held entity: one of {', '.join(sorted(self.collections))}"
            ) from None

    def touch(self, kind: str, n: int, at: dt.datetime | None = None) -> list[str]:
        """Update the first `n` records of a small entity now (new name suffix, and updated time where it has
        one: tag groups and tags have none); returns their ids."""
        if kind in NESTED_KINDS:  # a step, message or form version: its flow or form moves too
            return self.structure.touch(kind, n, at)
        at = (at or dt.datetime.now(UTC)).replace(microsecond=0)
        with self.lock:
            items = self._held(kind)
            chosen = items[:n]
            for r in chosen:
                for key in ("updated", "updated_at"):
                    if key in r.attributes:
                        r.attributes[key] = iso(at) if kind != "form" else iso(at).replace("+00:00", "Z")
                if "name" in r.attributes and r.attributes["name"] is not None:
                    r.attributes["name"] = r.attributes["name"].split(" (edited")[0] + f" (edited {iso(at)})"
                elif kind == "tag":
                    r.attributes["name"] = f"{r.attributes['name']}*"
            return [r.id for r in chosen]

    def delete(self, kind: str, n: int) -> list[str]:
        """Hard-delete the last `n` records of a small entity (as Klaviyo's DELETE does); their ids.

        A campaign takes its messages along; a tag its associations with campaigns, flows, lists and
        segments; a tag group its tags (and theirs). The default tag group cannot be deleted: `n` counts the
        others. A deleted template stays named by the campaign messages that used it. A flow takes its steps and
        their messages along, a form its versions; a step, message or version leaves its flow or form."""
        if kind in NESTED_KINDS:
            return self.structure.delete(kind, n)
        with self.lock:
            items = self._held(kind)
            if kind == "tag-group":
                gone = [g for g in items if not g.attributes["default"]][::-1][:n][::-1] if n > 0 else []
            else:
                gone = items[len(items) - n :] if n > 0 else []
            dropped = {r.id for r in gone}
            items[:] = [r for r in items if r.id not in dropped]
            for r in gone:
                self.by_id.pop((r.type, r.id), None)
                for kind_, rid in r.relationships.get("campaign-messages", []):
                    self.by_id.pop((kind_, rid), None)
            self.structure.forget(kind, gone)
            if kind == "tag-group":
                self.delete_tags([t.id for t in self.tags if t.internal["tag_group"] in dropped])
            elif kind == "tag":
                self._untag(dropped)
            return [r.id for r in gone]

    def delete_tags(self, ids: list[str]) -> list[str]:
        """Hard-delete these tags (and their associations); the ids deleted."""
        with self.lock:
            wanted = set(ids)
            gone = [t.id for t in self.tags if t.id in wanted]
            self.tags[:] = [t for t in self.tags if t.id not in wanted]
            for tid in gone:
                self.by_id.pop(("tag", tid), None)
            self._untag(set(gone))
            return gone

    def _untag(self, tag_ids: set[str]) -> None:
        for kind in ("campaign", "flow", "list", "segment"):
            for r in self.collections[kind]:
                links = r.relationships.get("tags")
                if links and any(tid in tag_ids for _, tid in links):
                    r.relationships["tags"] = [(k, tid) for k, tid in links if tid not in tag_ids]

    def revise_stats(self, family: str, entity_id: str, day: dt.date, amount: int = 1) -> None:
        """Revise a past day's report statistics for one flow, campaign, form or segment (late attribution)."""
        if family not in ("flow", "campaign", "form", "segment"):
            raise ValueError(f"no statistics for {family!r}")
        with self.lock:
            key = (family, entity_id, day)
            self.stat_revisions[key] = self.stat_revisions.get(key, 0) + amount
            self.__dict__.get("_segment_totals", {}).pop(entity_id, None)

    def import_events(self, n: int, days_ago: float, at: dt.datetime | None = None) -> list[str]:
        """Add `n` events dated `days_ago` before `at` (default now), as a late data import does; their ids."""
        at = at or dt.datetime.now(UTC)
        ts = int((at - dt.timedelta(days=days_ago)).timestamp())
        with self.lock:
            first = self.total_events + len(self.imported_timestamps)
            indices = list(range(first, first + n))
            self.imported_timestamps.extend([ts] * n)
            for i in indices:
                bisect.insort(self._imported_keys, (ts, 1, i))
            ids = [self.event_id(i) for i in indices]
            self.event_created_at.update(dict.fromkeys(ids, time.time()))  # system webhooks
            listeners = list(self.event_listeners)
        for listener in listeners:  # system webhooks
            listener(ids)
        return ids

    def touch_profiles(self, indices: list[int], at: dt.datetime | None = None) -> list[str]:
        at = (at or dt.datetime.now(UTC)).replace(microsecond=0)
        with self.lock:
            for i in indices:
                self.profile_overrides[i] = ProfileOverride(updated=at, first_name=f"Edited {i}")
        return [self.profile_id(i) for i in indices]

    def delete_profiles(self, indices: list[int]) -> list[str]:
        with self.lock:
            for i in indices:
                self.profile_overrides[i] = ProfileOverride(updated=self.profile_updated(i), deleted=True)
        return [self.profile_id(i) for i in indices]

    # -- profiles (computed) -------------------------------------------------------------------------
    def profile_created(self, i: int) -> dt.datetime:
        n = self.counts["profiles"]
        return self.history_start + dt.timedelta(seconds=int(self.span * 0.9 * i / max(n, 1)))

    def profile_updated(self, i: int) -> dt.datetime:
        override = self.profile_overrides.get(i)
        if override is not None:
            return override.updated
        return self.profile_base_updated(i)

    def profile_base_updated(self, i: int) -> dt.datetime:
        # Rises with the index (an updated-window is found by bisection), like profile_created.
        return self.profile_created(i) + dt.timedelta(seconds=int(self.span * 0.05))

    def profile_id(self, i: int) -> str:
        created_ms = int(self.profile_created(i).timestamp() * 1000)
        scrambled = (i * PROFILE_MUL + self.seed) % PROFILE_MOD
        return crockford(created_ms, 10) + crockford(scrambled, 16)

    def profile_index(self, pid: str) -> int | None:
        if len(pid) != 26 or any(c not in CROCKFORD for c in pid):
            return None
        scrambled = uncrockford(pid[10:])
        i = ((scrambled - self.seed) * pow(PROFILE_MUL, -1, PROFILE_MOD)) % PROFILE_MOD
        if i >= self.counts["profiles"] or self.profile_id(i) != pid:
            return None
        return i

    def profile_exists(self, i: int) -> bool:
        override = self.profile_overrides.get(i)
        return 0 <= i < self.counts["profiles"] and not (override and override.deleted)

    def profile(self, i: int, additional: frozenset[str] = frozenset()) -> dict[str, Any]:
        h = mix64(self.seed * 1_000_003 + i)
        first = FIRST[h % len(FIRST)]
        last = LAST[(h >> 8) % len(LAST)]
        city, country, region = CITIES[(h >> 16) % len(CITIES)]
        override = self.profile_overrides.get(i)
        attrs: dict[str, Any] = {
            "email": f"{first.lower()}.{i}@example.com" if (h >> 24) % 17 else None,
            "phone_number": f"+1555{(h >> 30) % 10_000_000:07d}" if (h >> 24) % 3 == 0 else None,
            "external_id": f"ext-{i}" if (h >> 34) % 4 == 0 else None,
            "first_name": (override.first_name if override and override.first_name else first),
            "last_name": last,
            "organization": None if (h >> 36) % 5 else "Example & Co.",
            "locale": ["en-US", "de-DE", "pt-BR", "ja-JP"][(h >> 16) % 4],
            "title": None,
            "image": None,
            "created": iso(self.profile_created(i)),
            "updated": iso(self.profile_updated(i)),
            "last_event_date": iso(self.profile_updated(i)) if (h >> 40) % 3 else None,
            "location": {
                "address1": f"{(h >> 12) % 999 + 1} Main St",
                "address2": None,
                "city": city,
                "country": country,
                "latitude": str(round(((h >> 20) % 18000) / 100 - 90, 4)),
                "longitude": round(((h >> 28) % 36000) / 100 - 180, 4),
                "region": region,
                "zip": f"{(h >> 44) % 100000:05d}",
                "timezone": "UTC",
                "ip": f"10.{(h >> 8) % 256}.{(h >> 16) % 256}.{(h >> 24) % 256}",
            },
            "properties": {"loyalty_tier": ["gold", "silver", "bronze"][h % 3], "pets": (h >> 4) % 4},
        }
        if "subscriptions" in additional:
            attrs["subscriptions"] = {
                "email": {
                    "marketing": {
                        "can_receive_email_marketing": bool(h % 2),
                        "consent": "SUBSCRIBED" if h % 2 else "UNSUBSCRIBED",
                        "consent_timestamp": iso(self.profile_created(i)).replace("T", " "),
                        "last_updated": iso(self.profile_updated(i)),
                        "method": "FORM",
                        "method_detail": "popup",
                        "custom_method_detail": None,
                        "double_optin": False,
                        "suppression": [],
                        "list_suppressions": [],
                    }
                }
            }
        if "predictive_analytics" in additional:
            attrs["predictive_analytics"] = {
                "historic_clv": round((h % 50000) / 100, 2),
                "predicted_clv": round(((h >> 8) % 50000) / 100, 2),
                "total_clv": round(((h >> 16) % 100000) / 100, 2),
                "historic_number_of_orders": h % 12,
                "predicted_number_of_orders": round(((h >> 4) % 500) / 100, 2),
                "average_days_between_orders": round(((h >> 6) % 9000) / 100, 2),
                "average_order_value": round(((h >> 10) % 20000) / 100, 2),
                "churn_probability": round(((h >> 12) % 100) / 100, 2),
                "expected_date_of_next_order": iso(self.anchor + dt.timedelta(days=h % 60)),
                "ranked_channel_affinity": ["email", "sms"],
            }
        return attrs

    # -- events (computed) ---------------------------------------------------------------------------
    def event_timestamp(self, i: int) -> int:
        n = self.counts["events"]
        if i >= self.total_events:
            return self.imported_timestamps[i - self.total_events]
        if i >= n:
            return int(self.anchor.timestamp()) + (i - n + 1) * 7 * 86400 + 1234
        return int(self.history_start.timestamp() + self.span * i / max(n, 1))

    def event_index_at(self, ts: float) -> int:
        """First event index whose timestamp is >= ts."""
        return bisect.bisect_left(range(self.total_events), ts, key=self.event_timestamp)

    def event_id(self, i: int) -> str:
        return b62((i * EVENT_MUL + self._event_offset) % EVENT_MOD, 10)

    def event_index(self, eid: str) -> int | None:
        if len(eid) != 10 or any(c not in BASE62 for c in eid):
            return None
        i = ((unb62(eid) - self._event_offset) * pow(EVENT_MUL, -1, EVENT_MOD)) % EVENT_MOD
        return i if i < self.total_events + len(self.imported_timestamps) else None

    def imported_keys(self) -> list[tuple[int, int, int]]:
        """The imported events as (timestamp, 1, index), sorted: after seeded events of the same second."""
        with self.lock:
            return list(self._imported_keys)

    def event_omits_relationship_data(self, i: int) -> bool:
        return self.omit_relationship_data and i % 5 == 0

    def event_metric_id(self, i: int) -> str:
        return self._metric_ids[mix64(self.seed ^ (i * 0x2545F4914F6CDD1D)) % len(self._metric_ids)]

    def event_profile_index(self, i: int) -> int:
        return mix64(i * 7 + self.seed) % max(self.counts["profiles"], 1)

    def event(self, i: int) -> tuple[dict[str, Any], str, str]:
        """(attributes, metric id, profile id) of event i."""
        ts = self.event_timestamp(i)
        h = mix64(self.seed * 7_000_003 + i)
        metric_id = self.event_metric_id(i)
        props: dict[str, Any] = {"$event_id": f"{i}", "Source": ["web", "ios", "android"][h % 3]}
        if metric_id in self._value_metric:
            value = round((h % 50_000) / 100, 2)
            props["$value"] = value
            props["Items"] = [
                {"SKU": f"SKU-{(h >> 8) % 500}", "Name": "Blue Shirt", "Quantity": 1 + (h >> 16) % 3}
            ]
        if i % 997 == 13:
            props["Note"] = "nul\x00inside and ünïcödé 🎉"
        attrs = {
            "timestamp": ts,
            "event_properties": props,
            "datetime": dt.datetime.fromtimestamp(ts, UTC).strftime(
                DATETIME_SHAPES[i % len(DATETIME_SHAPES)]
            ),
            "uuid": str(uuid.UUID(int=(h << 64) | mix64(h), version=1)),
        }
        return attrs, metric_id, self.profile_id(self.event_profile_index(i))
