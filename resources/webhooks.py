"""Klaviyo system webhooks: checking and reading a delivery, and managing webhooks through Klaviyo's API.

No Dagster code and no warehouse here: the receiver (pipelines/webhooks.py) calls `read_delivery` and stores
what it returns (resources/warehouse/inbox.py); the drain (assets/webhook_events.py) reads each stored event
with `event_resource`; the CLI registers webhooks with `WebhooksApi`.

What Klaviyo sends, from its documentation (not from the simulator):

- "Working with system webhooks" (https://developers.klaviyo.com/en/docs/working_with_system_webhooks): a
  POST (`Content-Type: application/json`) with the headers `Klaviyo-Webhook-Id` (the webhook's id),
  `Klaviyo-Signature` (an HMAC-SHA256 signature) and `Klaviyo-Timestamp` ("when the webhook request was
  sent"; the guide's example request shows an HTTP date, `Thu, 04 Jan 2024 18:05:25 GMT`). The body is
  `{"data": [...], "meta": {...}}`. Each item of `data` holds `external_id` ("ID of the event"), `payload`
  ("the same structure as a Get Event API call", i.e. `{"data": <event resource>, "links": ...}`) and `topic`
  (e.g. `event:klaviyo.sent_sms`; "topics are dynamic and based on the metrics available in your account",
  listed by Get Webhook Topics). `meta` holds `klaviyo_account_id`, `klaviyo_webhook_id` (it "must match the
  Klaviyo-Webhook-Id request header. If these values do not match, ... you should not process the webhook")
  and `timestamp`.
- The guide's section "HMAC signature verification": HMAC-SHA256 keyed with the webhook's `secret_key`, over
  the raw request body followed by the `Klaviyo-Timestamp` header value exactly as sent (no separator), as a
  hex digest compared with `Klaviyo-Signature` (its Python: `hmac.new(secret, request.body, hashlib.sha256)`,
  then `.update(timestamp.encode())`, `.hexdigest()`). The stored copy of the guide available here is cut
  before that section; independent implementations that cite it agree on body then timestamp, no separator,
  hex: hookdeck/webhook-skills `skills/klaviyo-webhooks/references/verification.md`, a Rust verification
  crate's Klaviyo provider (which also quotes the example's HTTP-date timestamp), and the webhook tests of
  nickdnk/klaviyo-php-sdk (which also show `payload` as `{"data": <event>}` with `external_id` its id).
- Klaviyo gives no freshness window: `TIMESTAMP_TOLERANCE` is this pipeline's choice. The timestamp is signed,
  so a replayed request cannot be re-dated into the window; within it, the inbox's key makes a replay a no-op.
- "Webhooks API overview" (https://developers.klaviyo.com/en/reference/webhooks): "only Advanced KDP
  customers and Klaviyo app partners can access and manage webhooks with our Webhooks API".
- The OpenAPI spec, revision 2026-07-15 (../shared/klaviyo-openapi/stable.json): `/api/webhooks` (GET, POST
  201), `/api/webhooks/{id}` (GET, PATCH, DELETE 204), `/api/webhook-topics` (GET). A `webhook` has name,
  description, endpoint_url ("Must be https"; read back "truncated for security"), secret_key (write only)
  and enabled; its topics are the to-many relationship `webhook-topics` (type `webhook-topic`, ids such as
  `event:klaviyo.sent_sms`). Scopes webhooks:read (GET) and webhooks:write (POST, PATCH, DELETE); every
  operation burst 1/s, steady 15/m (resources/klaviyo_api.py).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import hmac
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from resources.klaviyo import KlaviyoApiError, KlaviyoClient, KlaviyoError
from resources.klaviyo_api import (
    WEBHOOK_TOPICS_PATH,
    WEBHOOKS_PATH,
    WEBHOOKS_READ_SCOPE,
    WEBHOOKS_TIER,
    WEBHOOKS_WRITE_SCOPE,
    parse_timestamp,
)
from resources.textsafe import dumps_jsonb

UTC = dt.UTC
SIGNATURE_HEADER = "Klaviyo-Signature"
TIMESTAMP_HEADER = "Klaviyo-Timestamp"
WEBHOOK_ID_HEADER = "Klaviyo-Webhook-Id"
# How far Klaviyo-Timestamp may lie from the receiver's clock, either way (replay protection).
TIMESTAMP_TOLERANCE = dt.timedelta(minutes=5)
# The largest body the receiver reads. A delivery batches events (up to 1,000, say independent guides), each
# shaped like GET /api/events/{id}; 16 MiB leaves some 16 KB an event. A legitimate delivery refused here
# would be retried by Klaviyo again and again, so the bound is generous; polling still reads what it misses.
MAX_BODY_BYTES = 16 * 1024 * 1024
# Topics whose payload is an event (`event:<integration>.<metric>`), loaded into klaviyo_events; any other
# topic is stored in the inbox, flagged, and not loaded.
EVENT_TOPIC_PREFIX = "event:"


# -- refusals -------------------------------------------------------------------------------------------------
class WebhookRefused(ValueError):
    """A request the receiver refuses, with the HTTP status to answer; nothing of it is stored. The reason
    never quotes the body, a header value or the secret."""

    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotAuthentic(WebhookRefused):
    """Not provably from Klaviyo: a header missing, the signature or webhook id not matching, or a timestamp
    outside the tolerance."""

    status = 401


class Malformed(WebhookRefused):
    """Signed by Klaviyo, but not a delivery this receiver can read (not JSON, or not Klaviyo's envelope)."""

    status = 400


class TooLarge(WebhookRefused):
    """A body over MAX_BODY_BYTES."""

    status = 413


# -- a delivery -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookEvent:
    """One item of a delivery: the event's id (Klaviyo's `external_id`), its topic, and its payload as sent."""

    event_id: str
    topic: str
    known_topic: bool  # an event topic: its payload is an event resource, loaded into klaviyo_events
    payload: dict[str, Any]
    payload_json: str  # the payload serialized for JSONB (NUL characters escaped, see resources/textsafe.py)


@dataclass(frozen=True)
class Delivery:
    """A delivery that passed every check: who sent it, when, and its events (each event id once)."""

    webhook_id: str
    account_id: str
    sent_at: dt.datetime  # Klaviyo-Timestamp
    meta_json: str  # `meta` as sent, serialized for JSONB
    events: tuple[WebhookEvent, ...]
    items: int  # items in `data`, an event repeated within the delivery counted each time
    body_sha256: str
    body_bytes: int


def sign(body: bytes, timestamp: str, secret: str) -> str:
    """Klaviyo's signature of a delivery: HMAC-SHA256 keyed with the secret, of the raw body followed by the
    Klaviyo-Timestamp value as sent, in hex."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256)
    mac.update(timestamp.encode())
    return mac.hexdigest()


def parse_sent_at(value: str) -> dt.datetime:
    """Klaviyo-Timestamp as a UTC datetime: an HTTP date (the guide's example), else ISO 8601 or Unix seconds.
    Raises ValueError for anything else."""
    text = value.strip()
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text), UTC)
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            when = parse_timestamp(text)
    except (OverflowError, OSError) as exc:
        raise ValueError(f"not a time: {exc}") from None
    if when is None:
        raise ValueError("empty")
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def authenticate(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    now: dt.datetime | None = None,
    tolerance: dt.timedelta = TIMESTAMP_TOLERANCE,
) -> tuple[str, dt.datetime]:
    """The webhook id the headers name and when Klaviyo sent the request, once the signature matches (compared
    in constant time) and the timestamp lies within `tolerance` of now; NotAuthentic otherwise."""
    if not secret:
        raise ValueError("no webhook secret configured")
    named = {k.lower(): v for k, v in headers.items()}
    values = {
        h: (named.get(h.lower()) or "").strip()
        for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, WEBHOOK_ID_HEADER)
    }
    missing = [h for h, v in values.items() if not v]
    if missing:
        raise NotAuthentic(f"missing header {', '.join(missing)}")
    # The timestamp is signed as sent: its text, not a re-formatted value.
    raw_timestamp = values[TIMESTAMP_HEADER]
    expected = sign(body, raw_timestamp, secret).encode()
    given = values[SIGNATURE_HEADER].lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, given):
        raise NotAuthentic(f"{SIGNATURE_HEADER} does not match the body and {TIMESTAMP_HEADER}")
    try:
        sent_at = parse_sent_at(raw_timestamp)
    except ValueError:
        raise NotAuthentic(f"{TIMESTAMP_HEADER} is not a time") from None
    now = now or dt.datetime.now(UTC)
    if abs(now - sent_at) > tolerance:
        raise NotAuthentic(
            f"{TIMESTAMP_HEADER} is {abs(now - sent_at).total_seconds():.0f} s "
            f"{'old' if sent_at < now else 'ahead'} (tolerance {tolerance.total_seconds():.0f} s)"
        )
    return values[WEBHOOK_ID_HEADER], sent_at


def read_delivery(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    now: dt.datetime | None = None,
    max_bytes: int = MAX_BODY_BYTES,
) -> Delivery:
    """Check a request as Klaviyo specifies (signature, webhook id) plus freshness and size, and read its events;
    raises a WebhookRefused saying why (and with which status) otherwise. The body is parsed only once it is
    proven to come from Klaviyo."""
    if len(body) > max_bytes:
        raise TooLarge(f"the body is over {max_bytes} bytes")
    webhook_id, sent_at = authenticate(body, headers, secret, now)
    return parse_delivery(body, webhook_id, sent_at)


def parse_delivery(body: bytes, webhook_id: str, sent_at: dt.datetime) -> Delivery:
    """A signed body as a Delivery; Malformed (or NotAuthentic, for a webhook id that differs from the header's)
    when it is not Klaviyo's envelope."""
    try:
        document = json.loads(body, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise Malformed(f"the body is not JSON ({exc.msg} at byte {exc.pos})") from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, NaN/Infinity, nested too deep
        raise Malformed(f"the body is not JSON ({type(exc).__name__})") from None
    if not isinstance(document, dict):
        raise Malformed("the body is not a JSON object")
    meta = document.get("meta")
    if not isinstance(meta, dict):
        raise Malformed("the body has no `meta` object")
    claimed = meta.get("klaviyo_webhook_id")
    if not isinstance(claimed, str) or not hmac.compare_digest(
        claimed.encode("utf-8", "replace"), webhook_id.encode("utf-8", "replace")
    ):
        raise NotAuthentic(f"meta.klaviyo_webhook_id does not match the {WEBHOOK_ID_HEADER} header")
    account_id = _text(meta.get("klaviyo_account_id"), "meta.klaviyo_account_id")
    items = document.get("data")
    if not isinstance(items, list):
        raise Malformed("the body's `data` is not an array")
    events: dict[str, WebhookEvent] = {}
    for i, item in enumerate(items):
        event = _event(i, item)
        events.setdefault(event.event_id, event)  # an event repeated within a delivery is one event
    try:
        meta_json = dumps_jsonb(meta)
    except TypeError:
        raise Malformed("`meta` holds text Postgres cannot store") from None
    return Delivery(
        webhook_id=_text(webhook_id, WEBHOOK_ID_HEADER),
        account_id=account_id,
        sent_at=sent_at,
        meta_json=meta_json,
        events=tuple(events.values()),
        items=len(items),
        body_sha256=hashlib.sha256(body).hexdigest(),
        body_bytes=len(body),
    )


def event_resource(payload: Any) -> dict[str, Any] | None:
    """The event resource in an item's payload, which has the shape of a GET /api/events/{id} response
    (`{"data": {...}}`); None when it has not."""
    data = payload.get("data") if isinstance(payload, dict) else None
    return data if isinstance(data, dict) else None


def is_event_topic(topic: str) -> bool:
    """Whether a topic's payload is an event (loaded into klaviyo_events)."""
    return topic.startswith(EVENT_TOPIC_PREFIX)


def _event(i: int, item: Any) -> WebhookEvent:
    where = f"data[{i}]"
    if not isinstance(item, dict):
        raise Malformed(f"{where} is not an object")
    topic = _text(item.get("topic"), f"{where}.topic")
    payload = item.get("payload")
    if not isinstance(payload, dict):
        raise Malformed(f"{where}.payload is not an object")
    external_id = item.get("external_id")
    if external_id is not None:
        external_id = _text(external_id, f"{where}.external_id")
    known = is_event_topic(topic)
    resource = event_resource(payload)
    if known:
        if (
            resource is None
            or resource.get("type", "event") != "event"
            or not isinstance(resource.get("attributes"), dict)
        ):
            raise Malformed(
                f"{where} ({topic}): the payload is not an event (GET /api/events/{{id}}'s shape)"
            )
        resource_id = _text(resource.get("id"), f"{where}.payload.data.id")
        if external_id is not None and external_id != resource_id:
            raise Malformed(f"{where}: external_id is not the id of the payload's event")
    event_id = external_id or (resource or {}).get("id")
    event_id = _text(event_id, f"{where}.external_id")
    try:
        payload_json = dumps_jsonb(payload)
    except TypeError:  # orjson refuses what JSONB cannot hold (e.g. a lone surrogate)
        raise Malformed(f"{where}.payload holds text Postgres cannot store") from None
    return WebhookEvent(event_id, topic, known, payload, payload_json)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise Malformed(f"{what} is missing or not a string")
    if "\x00" in value or len(value) > 1000:
        raise Malformed(f"{what} is not an identifier")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# -- the Webhooks API -----------------------------------------------------------------------------------------
class WebhookAccessError(KlaviyoError):
    """Klaviyo refused a Webhooks API call with 401 or 403: the key's scope, or the account's plan."""

    def __init__(self, error: KlaviyoApiError, scope: str):
        self.status, self.scope = error.status, scope
        super().__init__(
            f"{error}; managing webhooks needs an API key with {scope}, and only Advanced KDP accounts and "
            "Klaviyo app partners may use Klaviyo's Webhooks API. Without webhooks, the klaviyo/events asset "
            "(polling) keeps klaviyo_events current on its own."
        )


class UnknownTopics(ValueError):
    """Topics the account does not offer (GET /api/webhook-topics)."""


@dataclass(frozen=True)
class Webhook:
    """A system webhook as Klaviyo lists it (its endpoint_url comes back truncated; the secret never)."""

    id: str
    name: str
    endpoint_url: str
    enabled: bool
    topics: tuple[str, ...]
    description: str | None = None
    created_at: str | None = None
    updated_at: str | None = None

    @classmethod
    def from_resource(cls, resource: dict[str, Any], topics: Iterable[str] = ()) -> Webhook:
        """A `webhook` resource; `topics` when its relationship carries no data."""
        attrs = resource.get("attributes") or {}
        rel = ((resource.get("relationships") or {}).get("webhook-topics") or {}).get("data")
        listed = [t.get("id") for t in rel if isinstance(t, dict)] if isinstance(rel, list) else list(topics)
        return cls(
            id=str(resource.get("id")),
            name=str(attrs.get("name") or ""),
            endpoint_url=str(attrs.get("endpoint_url") or ""),
            enabled=bool(attrs.get("enabled")),
            topics=tuple(str(t) for t in listed if t),
            description=attrs.get("description"),
            created_at=attrs.get("created_at"),
            updated_at=attrs.get("updated_at"),
        )


class WebhooksApi:
    """Klaviyo's Webhooks API, through the client's one request path (rate budget, retries, errors). A refusal
    for lack of access raises WebhookAccessError, naming the scope."""

    def __init__(self, client: KlaviyoClient):
        self.client = client

    def _call(
        self,
        method: str,
        path: str,
        scope: str,
        *,
        params: dict | None = None,
        body: dict | None = None,
        url: str | None = None,
    ) -> dict[str, Any]:
        try:
            return self.client.request(
                method,
                url or self.client.base_url + path,
                params=params,
                json_body=body,
                limits=[("webhooks", WEBHOOKS_TIER)],
            )
        except KlaviyoApiError as exc:
            if exc.status in (401, 403):
                raise WebhookAccessError(exc, scope) from exc
            raise

    def _listing(self, path: str, params: dict | None = None) -> Iterator[dict[str, Any]]:
        """Every resource of a listing, following `links.next`."""
        url: str | None = None
        seen: set[str] = set()
        while True:
            body = self._call("GET", path, WEBHOOKS_READ_SCOPE, params=None if url else params, url=url)
            data = body.get("data")
            if not isinstance(data, list):
                raise KlaviyoError(f"Klaviyo GET {path}: the response has no 'data' list")
            yield from (r for r in data if isinstance(r, dict))
            url = (body.get("links") or {}).get("next")
            if not url or url in seen:
                return
            seen.add(url)

    def list_topics(self) -> list[str]:
        """The topics this account offers (GET /api/webhook-topics)."""
        return [str(t["id"]) for t in self._listing(WEBHOOK_TOPICS_PATH) if t.get("id")]

    def list_webhooks(self) -> list[Webhook]:
        """Every webhook of the account, with its topics (GET /api/webhooks?include=webhook-topics)."""
        return [Webhook.from_resource(r) for r in self._listing(WEBHOOKS_PATH, {"include": "webhook-topics"})]

    def create(
        self,
        name: str,
        endpoint_url: str,
        secret_key: str,
        topics: Iterable[str],
        description: str | None = None,
    ) -> Webhook:
        """POST /api/webhooks: a new webhook sending these topics to the URL, signed with the secret."""
        topics = list(topics)
        attributes = {"name": name, "endpoint_url": endpoint_url, "secret_key": secret_key}
        if description is not None:
            attributes["description"] = description
        body = {"data": {"type": "webhook", "attributes": attributes, "relationships": _topic_links(topics)}}
        answer = self._call("POST", WEBHOOKS_PATH, WEBHOOKS_WRITE_SCOPE, body=body)
        return Webhook.from_resource(answer.get("data") or {}, topics)

    def update(
        self,
        webhook_id: str,
        *,
        endpoint_url: str | None = None,
        secret_key: str | None = None,
        topics: Iterable[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> Webhook:
        """PATCH /api/webhooks/{id}: change what is given (the topics are replaced by `topics`)."""
        attributes = {
            k: v
            for k, v in {
                "endpoint_url": endpoint_url,
                "secret_key": secret_key,
                "enabled": enabled,
                "description": description,
            }.items()
            if v is not None
        }
        data: dict[str, Any] = {"type": "webhook", "id": webhook_id, "attributes": attributes}
        topics = list(topics) if topics is not None else None
        if topics is not None:
            data["relationships"] = _topic_links(topics)
        answer = self._call(
            "PATCH", f"{WEBHOOKS_PATH}/{webhook_id}", WEBHOOKS_WRITE_SCOPE, body={"data": data}
        )
        return Webhook.from_resource(answer.get("data") or {}, topics or ())

    def delete(self, webhook_id: str) -> None:
        """DELETE /api/webhooks/{id} (Klaviyo answers 204)."""
        self._call("DELETE", f"{WEBHOOKS_PATH}/{webhook_id}", WEBHOOKS_WRITE_SCOPE)

    def register(
        self,
        name: str,
        endpoint_url: str,
        secret_key: str,
        topics: Iterable[str],
        description: str | None = None,
    ) -> tuple[Webhook, bool]:
        """Create the webhook named `name`, or update it (URL, secret, topics, enabled) when the account has one
        of that name: matched by name, since Klaviyo lists endpoint URLs truncated. The topics are checked
        against the account's first. Returns the webhook and whether it was created."""
        topics = list(dict.fromkeys(topics))
        check_endpoint_url(endpoint_url)
        if not secret_key:
            raise ValueError("no secret key: Klaviyo signs every delivery with it")
        if not topics:
            raise ValueError("no topics given")
        offered = set(self.list_topics())
        unknown = [t for t in topics if t not in offered]
        if unknown:
            raise UnknownTopics(
                f"not topics of this account: {', '.join(unknown)} (it offers: {', '.join(sorted(offered)) or 'none'})"
            )
        same = [w for w in self.list_webhooks() if w.name == name]
        if len(same) > 1:
            raise ValueError(
                f"{len(same)} webhooks are named {name!r} ({', '.join(w.id for w in same)}): delete all but one, "
                "or register under another name"
            )
        if same:
            updated = self.update(
                same[0].id,
                endpoint_url=endpoint_url,
                secret_key=secret_key,
                topics=topics,
                enabled=True,
                description=description,
            )
            return updated, False
        return self.create(name, endpoint_url, secret_key, topics, description), True


def check_endpoint_url(url: str) -> str:
    """The URL, or ValueError: Klaviyo sends webhooks only to https URLs (the spec: "Must be https")."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise ValueError(f"{url!r}: Klaviyo sends webhooks only to an https:// URL")
    return url


def _topic_links(topics: list[str]) -> dict[str, Any]:
    return {"webhook-topics": {"data": [{"type": "webhook-topic", "id": t} for t in topics]}}
