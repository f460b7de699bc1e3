"""Pure transforms: JSON:API records -> typed DataFrames for the entity tables. No I/O, no Dagster.

Each entity maps Klaviyo's attributes to typed columns; the whole resource (attributes, relationships, links)
lands in `metadata`, so nothing Klaviyo sends is lost, unknown fields included. A record without an id, or
whose timestamps cannot be parsed, is rejected with a reason instead of stopping the batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from resources.catalogue import CATALOGUE, ID_LISTINGS, MEMBER_ENTITIES
from resources.klaviyo_api import parse_timestamp
from resources.textsafe import dumps_jsonb

UTC = dt.UTC


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text, timestamp, bool, int, number, json
    get: Callable[[dict[str, Any], dict[str, Any]], Any]  # (attributes, context) -> value


@dataclass(frozen=True)
class EntityShape:
    entity: str
    table: str
    columns: tuple[Column, ...]
    owner_column: str | None = None  # an included resource's column naming the record that owns it
    # An included resource's relationship on the record that lists it, when not its type's plural (an item's
    # `variants`, whose type is catalog-variant).
    relationship: str | None = None


def entity_shape(entity: str, *columns: Column) -> EntityShape:
    """A catalogue entity's shape: its typed columns, plus the column its cursor lands in; the table and the
    cursor are the catalogue's."""
    entry = CATALOGUE[entity]
    if entry.cursor is not None:
        columns = (*columns, C(entry.cursor_column, "timestamp", entry.cursor))
    return EntityShape(entity, entry.table, columns)


@dataclass
class Rejected:
    id: str | None
    reason: str


@dataclass
class TransformResult:
    frame: pd.DataFrame
    rejected: list[Rejected] = field(default_factory=list)


def attr(name: str) -> Callable[[dict, dict], Any]:
    def get(a: dict, _c: dict) -> Any:
        value: Any = a
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return get


def _segment_status(a: dict, _c: dict) -> str:
    # Klaviyo has no segment status; derive the seed's from its flags: processing, active or inactive.
    if a.get("is_processing"):
        return "processing"
    return "active" if a.get("is_active") else "inactive"


def _campaign_channel(a: dict, c: dict) -> str | None:
    return c.get("channel")


def _related_id(name: str) -> Callable[[dict, dict], str | None]:
    """The id a to-one relationship points at, if Klaviyo gave its data."""

    def get(_a: dict, c: dict) -> str | None:
        rel = (c.get("_relationships") or {}).get(name)
        data = rel.get("data") if isinstance(rel, dict) else None
        return data.get("id") if isinstance(data, dict) else None

    return get


def _message_campaign(a: dict, c: dict) -> str | None:
    # The message's own relationship when Klaviyo gives its data; else the campaign that lists the message.
    return _related_id("campaign")(a, c) or (c.get("_owners") or {}).get(c.get("_id"))


def _owner(rel: str) -> Callable[[dict, dict], str | None]:
    """An included resource's owner: its own `rel` relationship when Klaviyo gives its data, else the record
    of the batch that lists it."""

    def get(a: dict, c: dict) -> str | None:
        return _related_id(rel)(a, c) or (c.get("_owners") or {}).get(c.get("_id"))

    return get


def _read_under(rel: str) -> Callable[[dict, dict], str | None]:
    """A nested resource's parent: its own `rel` relationship when Klaviyo gives its data, else the record it
    was listed under (GET /api/<parents>/{id}/...)."""

    def get(a: dict, c: dict) -> str | None:
        return _related_id(rel)(a, c) or c.get("_parent")

    return get


def _context(name: str) -> Callable[[dict, dict], Any]:
    def get(_a: dict, c: dict) -> Any:
        return c.get(name)

    return get


def _first_of(*names: str) -> Callable[[dict, dict], Any]:
    """The first of these (dotted) attributes that is present: the 2026-07-15 shape, then an older one."""
    getters = [attr(n) for n in names]

    def get(a: dict, c: dict) -> Any:
        return next((v for v in (g(a, c) for g in getters) if v is not None), None)

    return get


def _action_settings(a: dict, c: dict) -> Any:
    """A flow step's settings: its definition's `data` less the message it sends (klaviyo_flow_messages holds
    that); `settings` as revisions before the encoded definition sent it."""
    data = attr("definition.data")(a, c)
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k != "message"}
    return a.get("settings")


def _message_template(a: dict, c: dict) -> str | None:
    return _related_id("template")(a, c) or attr("definition.template_id")(a, c)


def _earliest_send(a: dict, _c: dict) -> dict | None:
    """The earliest of a message's send times ({datetime, is_local}); an unreadable one raises ValueError."""
    times = a.get("send_times")
    if not isinstance(times, list):
        return None
    entries = [(parse_timestamp(t.get("datetime")), t) for t in times if isinstance(t, dict)]
    entries = [(when, t) for when, t in entries if when is not None]
    return min(entries, key=lambda e: e[0])[1] if entries else None


def _send_time(a: dict, c: dict) -> Any:
    first = _earliest_send(a, c)
    return first.get("datetime") if first else None


def _send_is_local(a: dict, c: dict) -> Any:
    first = _earliest_send(a, c)
    return first.get("is_local") if first else None


def C(name: str, kind: str, get: Callable[[dict, dict], Any] | str | None = None) -> Column:  # noqa: N802
    return Column(name, kind, attr(get or name) if not callable(get) else get)


def _low_balance_threshold(a: dict, c: dict) -> int | None:
    """A coupon's low-balance threshold when it is a whole number (the spec gives monitor_configuration no
    schema, only an example; whatever it holds is kept whole in monitor_configuration)."""
    value = attr("monitor_configuration.low_balance_threshold")(a, c)
    number = None if isinstance(value, str) else _number(value)
    return int(number) if number is not None and number.is_integer() else None


# What a catalog item and a catalog variant both carry (spec 2026-07-15 CatalogItem/VariantResponseObjectResource).
_CATALOG_COLUMNS = (
    C("external_id", "text"),
    C("title", "text"),
    C("description", "text"),
    C("price", "number"),
    C("url", "text"),
    C("image_full_url", "text"),
    C("image_thumbnail_url", "text"),
    C("images", "json"),
    C("custom_metadata", "json"),
    C("published", "bool"),
)


SHAPES: dict[str, EntityShape] = {
    s.entity: s
    for s in [
        entity_shape(
            "campaigns",
            C("name", "text"),
            C("status", "text"),
            C("channel", "text", _campaign_channel),
            C("archived", "bool"),
            C("send_strategy", "text", "send_strategy.method"),
            C("send_time", "timestamp"),
            C("scheduled_at", "timestamp"),
            C("created_date", "timestamp", "created_at"),
        ),
        entity_shape(
            "flows",
            C("name", "text"),
            C("status", "text"),
            C("archived", "bool"),
            C("trigger_type", "text"),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape(
            "forms",
            C("name", "text"),
            C("status", "text"),
            C("ab_test", "bool"),
            C("created_date", "timestamp", "created_at"),
        ),
        entity_shape(
            "segments",
            C("name", "text"),
            C("status", "text", _segment_status),
            C("is_active", "bool"),
            C("is_processing", "bool"),
            C("is_starred", "bool"),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape(
            "lists",
            C("name", "text"),
            C("opt_in_process", "text"),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape(
            "metrics",
            C("name", "text"),
            C("integration_name", "text", "integration.name"),
            C("integration_category", "text", "integration.category"),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape("tags", C("name", "text"), C("tag_group_id", "text", _related_id("tag-group"))),
        entity_shape(
            "tag_groups", C("name", "text"), C("exclusive", "bool"), C("is_default", "bool", "default")
        ),
        entity_shape(
            "templates",
            C("name", "text"),
            C("editor_type", "text"),
            C("html", "text"),
            C("text", "text"),
            C("amp", "text"),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape(
            "flow_messages",
            C("flow_action_id", "text", _read_under("flow-action")),
            C("flow_id", "text", _context("_root")),
            C("channel", "text"),
            C("name", "text", "definition.name"),
            C("subject", "text", "definition.subject_line"),
            C("preview_text", "text", "definition.preview_text"),
            C("from_email", "text", "definition.from_email"),
            C("from_label", "text", "definition.from_label"),
            C("reply_to_email", "text", "definition.reply_to_email"),
            C("title", "text", "definition.title"),
            C("body", "text", "definition.body"),
            C("template_id", "text", _message_template),
            C("created_date", "timestamp", "created"),
        ),
        entity_shape(
            "form_versions",
            C("form_id", "text", _read_under("form")),
            C("variation_name", "text"),
            C("form_type", "text"),
            C("status", "text"),
            C("ab_test_variation_name", "text", "ab_test.variation_name"),
            C("created_date", "timestamp", "created_at"),
        ),
        entity_shape(
            "catalog_items",
            *_CATALOG_COLUMNS,
            C("created_date", "timestamp", "created"),
            C("updated_date", "timestamp", "updated"),  # a snapshot's guard: the catalogue adds no cursor
        ),
        entity_shape(
            "catalog_categories",
            C("external_id", "text"),
            C("name", "text"),
            C("updated_date", "timestamp", "updated"),
        ),
        entity_shape(
            "coupons",
            C("external_id", "text"),
            C("description", "text"),
            C("monitor_configuration", "json"),
            C("low_balance_threshold", "int", _low_balance_threshold),
        ),
        entity_shape(
            "coupon_codes",
            C("coupon_id", "text", _read_under("coupon")),
            C("unique_code", "text"),
            C("status", "text"),
            C("expires_at", "timestamp"),
            C("profile_id", "text", _related_id("profile")),
        ),
    ]
}

# Resources Klaviyo returns beside an entity (`include=`), by type, and how they land in their own table.
INCLUDED_SHAPES: dict[str, EntityShape] = {
    "campaign-message": EntityShape(
        "campaign_messages",
        "klaviyo_campaign_messages",
        (
            C("campaign_id", "text", _message_campaign),
            C("channel", "text", "definition.channel"),
            C("label", "text", "definition.label"),
            C("subject", "text", "definition.content.subject"),
            C("preview_text", "text", "definition.content.preview_text"),
            C("from_email", "text", "definition.content.from_email"),
            C("from_label", "text", "definition.content.from_label"),
            C("reply_to_email", "text", "definition.content.reply_to_email"),
            C("title", "text", "definition.content.title"),
            C("body", "text", "definition.content.body"),
            C("template_id", "text", _related_id("template")),
            C("send_time", "timestamp", _send_time),
            C("send_time_is_local", "bool", _send_is_local),
            C("created_date", "timestamp", "created_at"),
            C("updated_date", "timestamp", "updated_at"),
        ),
        owner_column="campaign_id",
    ),
    "flow-action": EntityShape(
        "flow_actions",
        "klaviyo_flow_actions",
        (
            C("flow_id", "text", _owner("flow")),
            C("action_type", "text", _first_of("definition.type", "action_type")),
            C("status", "text", _first_of("definition.data.status", "status")),
            C("settings", "json", _action_settings),
            C("next_action_id", "text", "definition.links.next"),
            C("definition", "json", "definition"),
            C("created_date", "timestamp", "created"),
            C("updated_date", "timestamp", "updated"),
        ),
        owner_column="flow_id",
    ),
    "catalog-variant": EntityShape(
        "catalog_variants",
        "klaviyo_catalog_variants",
        (
            C("item_id", "text", _owner("item")),
            C("sku", "text"),
            *_CATALOG_COLUMNS,
            C("inventory_policy", "int"),
            C("inventory_quantity", "number"),
            C("created_date", "timestamp", "created"),
            C("updated_date", "timestamp", "updated"),
        ),
        owner_column="item_id",
        relationship="variants",
    ),
}


def relationship_of(resource_type: str) -> str:
    """The relationship through which a record lists the included resources of this type (a flow's
    `flow-actions`, an item's `variants`)."""
    return INCLUDED_SHAPES[resource_type].relationship or resource_type + "s"


@dataclass(frozen=True)
class DerivedTable:
    """Rows a record's own attributes hold (a campaign's audiences) in a table of their own: no request of their
    own, replaced per record whenever the record is loaded. `version` is the record's guard column, copied onto
    each row (the version of the record the row reflects)."""

    name: str
    table: str
    owner_column: str
    key: tuple[str, ...]
    rows: Callable[[dict[str, Any]], Iterable[dict[str, Any]]]  # (attributes) -> rows, less account and owner
    version: str = "updated_date"


def _audiences(a: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A campaign's `audiences`: {included: [list or segment ids], excluded: [ids] | null}."""
    audiences = a.get("audiences") if isinstance(a.get("audiences"), dict) else {}
    for inclusion in ("included", "excluded"):
        ids = audiences.get(inclusion)
        for audience_id in dict.fromkeys(ids if isinstance(ids, list) else []):
            if isinstance(audience_id, str) and audience_id:
                yield {"audience_id": audience_id, "inclusion": inclusion}


DERIVED_TABLES: dict[str, DerivedTable] = {
    "campaign_audiences": DerivedTable(
        "campaign_audiences",
        "klaviyo_campaign_audiences",
        "campaign_id",
        ("account_id", "campaign_id", "audience_id", "inclusion"),
        _audiences,
    ),
}


def transform_derived(
    name: str, records: Iterable[Any], versions: dict[str, Any], account_id: str
) -> pd.DataFrame:
    """The rows of a derived table for the records loaded (`versions`: record id -> its guard value): each record's
    rows, carrying the record's version. A record without such rows yields none (its old rows are then removed)."""
    derived = DERIVED_TABLES[name]
    rows = []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else None
        attributes = record.get("attributes") if isinstance(record, dict) else None
        if rid not in versions or not isinstance(attributes, dict):
            continue
        for row in derived.rows(attributes):
            rows.append(
                {"account_id": account_id, derived.owner_column: rid, **row, derived.version: versions[rid]}
            )
    columns = [*derived.key, derived.version]
    frame = pd.DataFrame(rows, columns=columns).drop_duplicates(subset=list(derived.key), keep="last")
    frame[derived.version] = pd.to_datetime(frame[derived.version], utc=True)
    return frame.reset_index(drop=True)


_DTYPES = {"text": "object", "bool": "boolean", "int": "Int64", "number": "Float64", "json": "object"}


def _required_number(name: str, value: Any) -> float:
    """A JSON number (a price, a quantity); anything else raises ValueError (the record is rejected)."""
    number = _number(value)
    if number is None or isinstance(value, str):
        raise ValueError(f"{name} is not a number: {value!r}")
    return number


def _required_int(name: str, value: Any) -> int:
    """A JSON integer (or a float without a fraction); anything else raises ValueError."""
    number = _required_number(name, value)
    if not number.is_integer():
        raise ValueError(f"{name} is not an integer: {value!r}")
    return int(number)


def _identified(
    records: Iterable[Any], rejected: list[Rejected]
) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """Each record with its id and attributes; a record without them is added to `rejected`, saying why."""
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(rid, str) or not rid:
            rejected.append(Rejected(None, f"record without an id: {str(record)[:200]}"))
            continue
        attributes = record.get("attributes")
        if not isinstance(attributes, dict):
            rejected.append(Rejected(rid, "record without attributes"))
            continue
        yield record, rid, attributes


def transform(
    entity: str, records: Iterable[dict[str, Any]], account_id: str, context: dict[str, Any] | None = None
) -> TransformResult:
    """Records of one entity (one page or batch) -> a typed frame for its table, plus what was rejected."""
    return _transform_shape(SHAPES[entity], records, account_id, context)


def transform_included(
    resource_type: str, records: Iterable[dict[str, Any]], included: Iterable[Any], account_id: str
) -> TransformResult:
    """The resources of `resource_type` Klaviyo returned beside `records` (`include=`) and listed by one of them
    (e.g. in a campaign's `campaign-messages`) -> a typed frame for their own table. A resource names its owner
    through its own relationship when Klaviyo gives its data, else through the record that lists it."""
    relationship = relationship_of(resource_type)
    owners: dict[str, str] = {}
    for record in records:
        rel = ((record.get("relationships") or {}) if isinstance(record, dict) else {}).get(relationship)
        data = rel.get("data") if isinstance(rel, dict) else None
        for link in data if isinstance(data, list) else [data] if isinstance(data, dict) else []:
            if isinstance(link, dict) and isinstance(record.get("id"), str):
                owners.setdefault(link.get("id"), record["id"])
    # Only resources a record of the batch lists: a page's records outside the window were dropped client-side.
    resources = [
        r
        for r in included
        if isinstance(r, dict) and r.get("type") == resource_type and r.get("id") in owners
    ]
    return _transform_shape(INCLUDED_SHAPES[resource_type], resources, account_id, {"_owners": owners})


def _transform_shape(
    shape: EntityShape, records: Iterable[dict[str, Any]], account_id: str, context: dict[str, Any] | None
) -> TransformResult:
    context = dict(context or {})
    rows: list[dict[str, Any]] = []
    rejected: list[Rejected] = []
    for record, rid, attributes in _identified(records, rejected):
        ctx = {**context, "_id": rid, "_relationships": record.get("relationships") or {}}
        row: dict[str, Any] = {"id": rid, "account_id": account_id}
        try:
            for col in shape.columns:
                value = col.get(attributes, ctx)
                if col.kind == "timestamp":
                    value = parse_timestamp(value)
                elif col.kind == "bool" and value is not None and not isinstance(value, bool):
                    raise ValueError(f"{col.name} is not a boolean: {value!r}")
                elif col.kind == "number" and value is not None:
                    value = _required_number(col.name, value)
                elif col.kind == "int" and value is not None:
                    value = _required_int(col.name, value)
                elif col.kind == "text" and value is not None and not isinstance(value, str):
                    value = str(value)
                elif col.kind == "json" and value is not None and not isinstance(value, dict | list):
                    value = dumps_jsonb(value)  # a bare JSON scalar, serialized as the load expects text
                row[col.name] = value
        except ValueError as exc:
            rejected.append(Rejected(rid, f"unparseable value: {exc}"))
            continue
        if "archived" in row and row["archived"] is None:
            row["archived"] = bool(context.get("archived", False))
        row["metadata"] = _raw(record)
        sync = {k: v for k, v in context.items() if not k.startswith("_")}
        if sync:
            row["metadata"]["_sync"] = sync
        rows.append(row)
    return TransformResult(_frame(shape, rows), rejected)


def _raw(record: dict[str, Any]) -> dict[str, Any]:
    """The resource as Klaviyo sent it, less its links (derivable from type and id, and host-specific)."""
    raw = {k: v for k, v in record.items() if k not in ("id", "links")}
    relationships = raw.get("relationships")
    if isinstance(relationships, dict):
        raw["relationships"] = {
            name: {k: v for k, v in rel.items() if k != "links"} if isinstance(rel, dict) else rel
            for name, rel in relationships.items()
        }
    return raw


def _frame(shape: EntityShape, rows: list[dict[str, Any]]) -> pd.DataFrame:
    names = ["id", "account_id", *(c.name for c in shape.columns), "metadata"]
    frame = pd.DataFrame(rows, columns=names)
    for col in shape.columns:
        if col.kind == "timestamp":
            frame[col.name] = pd.to_datetime(frame[col.name], utc=True)
        else:
            frame[col.name] = frame[col.name].astype(_DTYPES[col.kind])
    return frame


# -- profiles and events: the volume streams, built column by column ---------------------------------------
PROFILE_FIELDS = (
    "email", "phone_number", "external_id", "first_name", "last_name", "organization", "locale", "title", "image",
)  # fmt: skip
LOCATION_FIELDS = ("address1", "address2", "city", "region", "country", "zip", "timezone", "ip")
PROFILE_KNOWN = set(PROFILE_FIELDS) | {
    "created", "updated", "last_event_date", "location", "properties", "subscriptions", "predictive_analytics",
}  # fmt: skip
EVENT_KNOWN = {"timestamp", "datetime", "uuid", "event_properties"}


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


PROFILES, EVENTS = CATALOGUE["profiles"], CATALOGUE["events"]


def transform_profiles(records: Iterable[dict[str, Any]], account_id: str) -> TransformResult:
    """Profiles -> klaviyo_profiles rows: typed defaults and location, properties and unknown attributes in JSONB."""
    cols: dict[str, list] = {c: [] for c in ("id", "account_id", *PROFILE_FIELDS, "created_date", "updated_date",
                                             "last_event_date", *LOCATION_FIELDS, "latitude", "longitude",
                                             "properties", "subscriptions", "predictive_analytics", "attributes_extra")}  # fmt: skip
    rejected: list[Rejected] = []
    for record, rid, attrs in _identified(records, rejected):
        location = attrs.get("location") if isinstance(attrs.get("location"), dict) else {}
        cols["id"].append(rid)
        cols["account_id"].append(account_id)
        for f in PROFILE_FIELDS:
            v = attrs.get(f)
            cols[f].append(v if v is None or isinstance(v, str) else str(v))
        cols["created_date"].append(attrs.get("created"))
        cols["updated_date"].append(attrs.get(PROFILES.cursor))
        cols["last_event_date"].append(attrs.get("last_event_date"))
        for f in LOCATION_FIELDS:
            v = location.get(f)
            cols[f].append(v if v is None or isinstance(v, str) else str(v))
        cols["latitude"].append(_number(location.get("latitude")))
        cols["longitude"].append(_number(location.get("longitude")))
        props = attrs.get("properties")
        cols["properties"].append(props if isinstance(props, dict) else {})
        cols["subscriptions"].append(attrs.get("subscriptions"))
        cols["predictive_analytics"].append(attrs.get("predictive_analytics"))
        extra = {k: v for k, v in attrs.items() if k not in PROFILE_KNOWN}
        if record.get("relationships"):
            extra["_relationships"] = {
                k: v.get("data")
                for k, v in record["relationships"].items()
                if isinstance(v, dict) and "data" in v
            }
        cols["attributes_extra"].append(extra)
    frame = _frame_with_datetimes(cols, ("created_date", "updated_date", "last_event_date"), rejected)
    return TransformResult(frame, rejected)


def transform_events(records: Iterable[dict[str, Any]], account_id: str) -> TransformResult:
    """Events -> klaviyo_events rows: metric, profile and attribution ids from the relationships.

    Datetimes are parsed for the whole batch at once (pandas, ISO 8601 in any shape Klaviyo sends); an entry
    pandas cannot read is parsed on its own, and rejected with the reason if that fails too. The loop is the
    hottest Python of a backfill (one pass per event), so it appends to local lists and inlines the lookups."""
    ids, whens, stamps, uuids, metric_ids, profile_ids = [], [], [], [], [], []
    values, attribution_ids, properties, extras = [], [], [], []
    rejected: list[Rejected] = []
    for record, rid, attrs in _identified(records, rejected):
        when = attrs.get(EVENTS.cursor)
        stamp = attrs.get("timestamp")
        if when is None:
            when = stamp
            if when is None:
                rejected.append(Rejected(rid, "event without a datetime"))
                continue
        relationships = record.get("relationships")
        if type(relationships) is not dict:
            relationships = _EMPTY
        props = attrs.get("event_properties")
        if type(props) is not dict:
            props = {}
        metric = relationships.get("metric")
        metric = metric.get("data") if type(metric) is dict else None
        profile = relationships.get("profile")
        profile = profile.get("data") if type(profile) is dict else None
        attributions = relationships.get("attributions")
        attributions = attributions.get("data") if type(attributions) is dict else None
        extra = attrs.keys() - EVENT_KNOWN
        value = props.get("$value")
        ids.append(rid)
        whens.append(when)
        stamps.append(stamp if type(stamp) is int else None)
        uuids.append(attrs.get("uuid"))
        metric_ids.append(metric.get("id") if type(metric) is dict else None)
        profile_ids.append(profile.get("id") if type(profile) is dict else None)
        values.append(None if value is None else _number(value))
        attribution_ids.append(
            [a.get("id") if type(a) is dict else None for a in attributions]
            if type(attributions) is list
            else None
        )
        properties.append(props)
        extras.append({k: attrs[k] for k in extra} if extra else {})
    cols = {
        "id": ids,
        "account_id": [account_id] * len(ids),
        "datetime": whens,
        "timestamp": stamps,
        "uuid": uuids,
        "metric_id": metric_ids,
        "profile_id": profile_ids,
        "value": values,
        "attribution_ids": attribution_ids,
        "event_properties": properties,
        "attributes_extra": extras,
    }
    frame = _frame_with_datetimes(cols, ("datetime",), rejected)
    # Epoch seconds whatever the datetimes' resolution (pandas picks it from the text: us, ns, ...).
    seconds = (frame["datetime"] - _EPOCH) // pd.Timedelta(seconds=1) if len(frame) else frame["timestamp"]
    frame["timestamp"] = frame["timestamp"].fillna(seconds).astype("Int64")
    return TransformResult(frame, rejected)


_EMPTY: dict[str, Any] = {}
_EPOCH = pd.Timestamp(0, tz="UTC")


def _frame_with_datetimes(
    cols: dict[str, list], datetimes: Iterable[str], rejected: list[Rejected]
) -> pd.DataFrame:
    """The columns as a frame, those named in `datetimes` parsed from the raw values Klaviyo sent; a row with
    one that cannot be read is dropped and added to `rejected`, naming the column."""
    frame = pd.DataFrame(cols)
    bad: dict[int, str] = {}
    for column in datetimes:
        frame[column], unreadable = _parse_datetimes(cols[column])
        for i, reason in unreadable.items():
            bad.setdefault(i, f"{column}: {reason}")
    if not bad:
        return frame
    rejected += [Rejected(frame.at[i, "id"], reason) for i, reason in sorted(bad.items())]
    return frame.drop(index=list(bad)).reset_index(drop=True)


def _parse_datetimes(values: list[Any]) -> tuple[pd.Series, dict[int, str]]:
    """Datetimes (ISO 8601 text or epoch seconds) as one UTC series, and the positions that could not be read."""
    text = pd.Series([v if isinstance(v, str) else None for v in values], dtype=object)
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    bad: dict[int, str] = {}
    positions, stamps = [], []
    for i in np.flatnonzero(parsed.isna().to_numpy()):
        if values[i] is None:
            continue  # absent (e.g. a profile's last_event_date before any event): NULL
        try:
            one = parse_timestamp(values[i])
        except (ValueError, OverflowError, OSError, TypeError, pd.errors.OutOfBoundsDatetime) as exc:
            bad[int(i)] = f"unparseable datetime: {exc}"
            continue
        if one is not None:
            positions.append(int(i))
            stamps.append(pd.Timestamp(one))
    if positions:  # one assignment for all of them: per-item assignment is slow in pandas
        parsed.iloc[positions] = pd.to_datetime(stamps, utc=True).as_unit(parsed.dt.unit)
    return parsed, bad


def transform_members(
    entity: str, records: Iterable[dict[str, Any]], account_id: str, context: dict[str, Any]
) -> TransformResult:
    """A list's or segment's members (context `group_id`: the one they were read under) -> rows of its member
    table: the profile, when it joined, `left_at` NULL (a profile Klaviyo lists is a member, again if it had
    left); attributes beyond joined_group_at in `metadata`. A member without a readable join time is rejected."""
    entry = CATALOGUE[entity]
    group_column, cursor = entry.key[1], entry.cursor
    group = context["group_id"]
    profiles, joined, extras = [], [], []
    rejected: list[Rejected] = []
    for _record, rid, attrs in _identified(records, rejected):
        if attrs.get(cursor) is None:
            rejected.append(Rejected(rid, f"member without {cursor}"))
            continue
        profiles.append(rid)
        joined.append(attrs[cursor])
        extras.append({k: v for k, v in attrs.items() if k != cursor} if len(attrs) > 1 else {})
    stamps, unreadable = _parse_datetimes(joined)
    frame = pd.DataFrame(
        {
            "account_id": [account_id] * len(profiles),
            group_column: [group] * len(profiles),
            "profile_id": profiles,
            "joined_group_at": stamps,
            "left_at": pd.Series(pd.NaT, index=range(len(profiles)), dtype="datetime64[us, UTC]"),
            "metadata": extras,
        }
    )
    if unreadable:
        rejected += [Rejected(profiles[i], f"{cursor}: {reason}") for i, reason in sorted(unreadable.items())]
        frame = frame.drop(index=list(unreadable)).reset_index(drop=True)
    return TransformResult(frame, rejected)


def transform_ids(
    entity: str, records: Iterable[dict[str, Any]], account_id: str, context: dict[str, Any]
) -> TransformResult:
    """Resource identifiers listed under a parent record (a `/relationships/` route; context `_parent`: the record
    read under) -> rows of the entity's link table: the parent in its column, each listed id in the key's other
    column, the identifier as Klaviyo sent it (less its id) in `metadata`."""
    entry = CATALOGUE[entity]
    parent_column = entry.parent.column
    (listed_column,) = [c for c in entry.key if c not in ("account_id", parent_column)]
    rows, rejected = [], []
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else None
        if not isinstance(rid, str) or not rid:
            rejected.append(Rejected(None, f"identifier without an id: {str(record)[:200]}"))
            continue
        if record.get("type") != entry.endpoint.type:
            rejected.append(Rejected(rid, f"not a {entry.endpoint.type}: {record.get('type')!r}"))
            continue
        metadata = {k: v for k, v in record.items() if k != "id"}
        rows.append({"account_id": account_id, parent_column: context["_parent"], listed_column: rid,
                     "metadata": metadata})  # fmt: skip
    frame = pd.DataFrame(rows, columns=["account_id", parent_column, listed_column, "metadata"])
    return TransformResult(frame.drop_duplicates(subset=list(entry.key)).reset_index(drop=True), rejected)


# Each catalogue entity's transform: (records, account_id, pass context) -> rows for its table.
TRANSFORMS: dict[str, Callable[[list[dict[str, Any]], str, dict[str, Any]], TransformResult]] = {
    **{name: (lambda r, a, c, _n=name: transform(_n, r, a, c)) for name in SHAPES},
    "profiles": lambda r, a, c: transform_profiles(r, a),
    "events": lambda r, a, c: transform_events(r, a),
    **{name: (lambda r, a, c, _n=name: transform_members(_n, r, a, c)) for name in MEMBER_ENTITIES},
    **{name: (lambda r, a, c, _n=name: transform_ids(_n, r, a, c)) for name in ID_LISTINGS},
}
if set(TRANSFORMS) != set(CATALOGUE):
    raise RuntimeError(f"entities without a transform: {sorted(set(CATALOGUE) - set(TRANSFORMS))}")
