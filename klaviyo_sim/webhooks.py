"""Klaviyo's system webhooks: `/api/webhooks`, `/api/webhook-topics`, and signed, batched delivery of new events.

What this module relies on, and where it is read from:

- Klaviyo's OpenAPI spec, revision 2026-07-15 (klaviyo/openapi f0a30ba4; the slices in spec/, cut by
  spec/extract.py): the seven operations and their bodies; scopes `webhooks:read` / `webhooks:write`; the XS
  tier (burst 1/s, steady 15/m) on every one; `secret_key` appears in the create and update queries only, never
  in a response; a response's `endpoint_url` is "truncated for security" (its example is the bare origin of the
  create example's URL); the create query's `endpoint_url` "Must be https"; `enabled` is not settable on create;
  a `webhook-topic` has no attributes, its id looks like `event:klaviyo.sent_sms`.
- Klaviyo, "Working with system webhooks" (https://developers.klaviyo.com/en/docs/working_with_system_webhooks)
  and "Webhooks API overview" (https://developers.klaviyo.com/en/reference/webhooks): only Advanced KDP customers
  and Klaviyo app partners can use the Webhooks API; a delivery carries the headers `Klaviyo-Webhook-Id`,
  `Klaviyo-Signature` (HMAC-SHA256) and `Klaviyo-Timestamp` (when the request was sent), `Content-Type:
  application/json`, and the body `{"data": [{"external_id", "payload", "topic"}], "meta": {"klaviyo_account_id",
  "klaviyo_webhook_id", "timestamp"}}`, where `payload` has the structure of a Get Event call, `external_id` is
  the event's id, and `meta.klaviyo_webhook_id` must equal the `Klaviyo-Webhook-Id` header; topics are dynamic,
  one per metric of the account, e.g. "Bounced Email" is `event:klaviyo.bounced_email`.
- That page's "HMAC signature verification" section. The copies of the page searchable here stop before it, so
  it is read as three independent third parties quote it (a Rust webhook-verification crate citing the section,
  hookdeck/webhook-skills `skills/klaviyo-webhooks/references/verification.md`, the PHP client nickdnk/klaviyo's
  webhook tests), who agree: `hmac.new(secret, body, sha256)` updated with the `Klaviyo-Timestamp` value as sent,
  i.e. HMAC-SHA256 keyed by the secret (UTF-8) over the raw body followed by the timestamp, no separator,
  lowercase hex. The docs' example timestamp is an HTTP date (`Thu, 04 Jan 2024 18:05:25 GMT`); their example
  webhook id header is 64 hex characters, the spec's example id a 26-character ULID (used here).
- Delivery rules as secondary sources state them from that page (a generated guide "Subscribe to Klaviyo
  webhooks and verify deliveries", grounded in the spec and the page; hookdeck's `references/overview.md`): a
  delivery holds up to 1,000 events; Klaviyo expects a 200, 201 or 202 within 5 seconds; it retries failures with
  exponential backoff up to a maximum delay of one hour and disables a webhook that stays in error for more than
  48 hours; the secret has at least 16 characters. A delivery in nickdnk/klaviyo's tests (real-looking ids) has
  `meta.timestamp` with microseconds (`2026-04-13T22:50:12.101159+00:00`), a `meta.version`, and a `payload` of
  `{"data": <event>}` only.

Where the docs are silent the conservative reading is taken, and said so where it is applied (`# Silent:`).
"""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import hashlib
import heapq
import hmac
import http.client
import ipaddress
import json
import random
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, urlsplit

from klaviyo_sim.common import UTC, crockford
from klaviyo_sim.data import Account, Resource
from klaviyo_sim.errors import ApiError, invalid, not_found, permission_denied
from klaviyo_sim.paging import collection_links, self_link
from klaviyo_sim.render import Renderer
from klaviyo_sim.spec import Operation

OPERATIONS = frozenset(
    {
        "get_webhooks",
        "create_webhook",
        "get_webhook",
        "update_webhook",
        "delete_webhook",
        "get_webhook_topics",
        "get_webhook_topic",
    }
)
SIGNATURE_HEADER = "Klaviyo-Signature"
TIMESTAMP_HEADER = "Klaviyo-Timestamp"
WEBHOOK_ID_HEADER = "Klaviyo-Webhook-Id"
MAX_BATCH = 1000
MIN_SECRET_LENGTH = 16
# Silent: whether a 204 (or any other 2xx) counts; the secondary sources name 200, 201 and 202, so only they do.
SUCCESS_STATUSES = frozenset({200, 201, 202})
META_VERSION = "2024-06-28"
FAULT_KINDS = ("bad_signature", "wrong_webhook_id", "duplicate", "out_of_order", "replay")


# -- topics ---------------------------------------------------------------------------------------------------
def topic_id(metric: Resource) -> str:
    """The topic of a metric's events: `event:<integration>.<metric name, snake case>` (Klaviyo's table gives
    `event:klaviyo.bounced_email` for "Bounced Email"; the prefix of other integrations' metrics is inferred)."""
    integration = (metric.attributes.get("integration") or {}).get("key") or "api"
    name = re.sub(r"[^0-9a-z]+", "_", metric.attributes["name"].lower()).strip("_")
    return f"event:{integration}.{name}"


def account_topics(account: Account) -> dict[str, str]:
    """The account's topics by metric id, in the order of its metrics."""
    with account.lock:
        return {m.id: topic_id(m) for m in account.metrics}


# -- signing --------------------------------------------------------------------------------------------------
def sign(body: bytes, secret: str, timestamp: str) -> str:
    """Klaviyo's signature: HMAC-SHA256 keyed by the secret over the body followed by the timestamp, hex."""
    return hmac.new(secret.encode(), body + timestamp.encode(), hashlib.sha256).hexdigest()


def http_date(at: float) -> str:
    """A `Klaviyo-Timestamp` value: an HTTP date, `Thu, 04 Jan 2024 18:05:25 GMT`."""
    return email.utils.formatdate(at, usegmt=True)


def meta_timestamp(at: float) -> str:
    """`meta.timestamp`: ISO 8601 with microseconds and +00:00, as a captured delivery has it."""
    return dt.datetime.fromtimestamp(at, UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class SignedDelivery:
    """One webhook request as it goes on the wire: the body's exact bytes and the headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def document(self) -> dict:
        return json.loads(self.body)


def encode(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def signed_delivery(
    body: bytes | dict,
    secret: str,
    timestamp: float | dt.datetime | str | None = None,
    webhook_id: str | None = None,
) -> SignedDelivery:
    """A correctly signed delivery of `body` (bytes as they are, or a document to serialize) for `secret`.

    `timestamp` is when it was sent (epoch seconds, a datetime, or a header value as is; default now);
    `webhook_id` defaults to the body's `meta.klaviyo_webhook_id`."""
    raw = body if isinstance(body, bytes) else encode(body)
    if timestamp is None:
        timestamp = time.time()
    if isinstance(timestamp, dt.datetime):
        timestamp = timestamp.timestamp()
    stamp = timestamp if isinstance(timestamp, str) else http_date(timestamp)
    if webhook_id is None:
        webhook_id = json.loads(raw)["meta"]["klaviyo_webhook_id"]
    headers = {
        "Content-Type": "application/json",
        WEBHOOK_ID_HEADER: webhook_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(raw, secret, stamp),
    }
    return SignedDelivery(raw, headers)


# -- the registry ---------------------------------------------------------------------------------------------
@dataclass
class Webhook:
    """A registered webhook (`secret_key` is kept, never rendered)."""

    id: str
    account: Account
    name: str
    endpoint_url: str
    secret_key: str
    topics: list[str]
    description: str | None = None
    enabled: bool = True
    created_at: str = ""
    updated_at: str = ""
    failing_since: float | None = None  # monotonic time of the first failure since the last success


def new_id() -> str:
    """A ULID-shaped id (26 Crockford characters, time first), as the spec's example webhook id."""
    return crockford(int(time.time() * 1000), 10) + crockford(uuid.uuid4().int >> 48, 16)


def _now_iso() -> str:
    return dt.datetime.now(UTC).isoformat(timespec="microseconds")


# -- delivery settings and faults -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """When failed deliveries are tried again, in Klaviyo's seconds (the service's time_scale shrinks them).

    Silent: the first delay, the factor and a cap on attempts; the documented cap on the delay is one hour and a
    webhook failing for over 48 hours is disabled. A failure is any status outside SUCCESS_STATUSES (4xx
    included: nothing says a 4xx stops the retries), a connection error, or no answer within `timeout`. Also
    silent: whether a batch being retried holds back the webhook's later batches; it does not, so a receiver sees
    batches out of order after a failure."""

    first_delay: float = 10.0
    factor: float = 2.0
    max_delay: float = 3600.0
    disable_after: float = 48 * 3600.0
    timeout: float = 5.0  # real seconds: the receiver's budget to answer
    max_attempts: int | None = None  # None: until success or the webhook is disabled

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1 for the first)."""
        return min(self.first_delay * self.factor ** (attempt - 1), self.max_delay)


@dataclass
class WebhookFaults:
    """Faults in the deliveries, for the receiver's tests: a share of batches (0..1) gets each, or a script of
    fault sets for the next batches (`queue`).

    - bad_signature: a forged copy of the batch, signed with a wrong secret, goes out just before it.
    - wrong_webhook_id: a copy, correctly signed, whose `Klaviyo-Webhook-Id` is another webhook's, goes first.
    - duplicate: the batch's first request is sent twice, byte for byte.
    - out_of_order: the batch is held back until the webhook's next batch has gone (at most `hold` seconds).
    - replay: the batch's first request is sent again `replay_delay` seconds later with its original timestamp
      and signature; with `replay_stale_by` > 0 the copy is the one a capture that many seconds older would be
      (timestamp and meta.timestamp moved back, signed correctly), for a receiver's freshness window.
    The forged copies and the replays are never retried."""

    bad_signature: float = 0.0
    wrong_webhook_id: float = 0.0
    duplicate: float = 0.0
    out_of_order: float = 0.0
    replay: float = 0.0
    replay_delay: float = 0.5
    replay_stale_by: float = 0.0
    hold: float = 1.0
    script: collections.deque = field(default_factory=collections.deque)
    rng: random.Random = field(default_factory=lambda: random.Random(4321))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def queue(self, *faults: str | set[str] | frozenset[str] | None) -> None:
        """Give the next batches these faults, in order: a kind, a set of kinds, or None (a clean batch)."""
        sets = [frozenset() if f is None else frozenset([f] if isinstance(f, str) else f) for f in faults]
        unknown = set().union(*sets) - set(FAULT_KINDS) if sets else set()
        if unknown:
            raise ValueError(f"unknown webhook faults: {sorted(unknown)}")
        with self.lock:
            self.script.extend(sets)

    def draw(self) -> frozenset[str]:
        with self.lock:
            if self.script:
                return self.script.popleft()
            rolls = {kind: self.rng.random() for kind in FAULT_KINDS}
        return frozenset(kind for kind, roll in rolls.items() if roll < getattr(self, kind))


@dataclass(frozen=True)
class Attempt:
    """One request sent to a webhook's endpoint (a delivery attempt, or a fault's extra request)."""

    webhook_id: str
    batch_id: str
    attempt: (
        int  # 1 for a batch's first request, then one up per retry; a fault's copy has its batch's number
    )
    event_ids: tuple[str, ...]
    status: int | None  # None: connection error or timeout
    error: str | None
    at: float  # time.time() when it was sent
    elapsed: float
    fault: str | None  # None for a genuine delivery attempt, else the fault kind of this extra request
    url: str
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def document(self) -> dict:
        return json.loads(self.body)

    def as_json(self) -> dict:
        return {
            "webhook_id": self.webhook_id,
            "batch_id": self.batch_id,
            "attempt": self.attempt,
            "event_ids": list(self.event_ids),
            "status": self.status,
            "error": self.error,
            "at": self.at,
            "elapsed": self.elapsed,
            "fault": self.fault,
            "ok": self.ok,
            "url": self.url,
            "headers": self.headers,
            "body": self.body.decode(),
        }


@dataclass
class _Batch:
    id: str
    webhook_id: str
    account: Account
    items: list[tuple[str, str]]  # (event id, topic)
    faults: frozenset[str] = frozenset()
    attempts: int = 0

    @property
    def event_ids(self) -> tuple[str, ...]:
        return tuple(eid for eid, _ in self.items)


# -- the service ----------------------------------------------------------------------------------------------
class WebhookService:
    """The webhooks of each account, their API, and a background deliverer: new events of an enabled webhook's
    topics go out in signed batches of up to `max_batch`, each waiting at most `linger` seconds for company."""

    def __init__(
        self,
        max_batch: int = MAX_BATCH,
        linger: float = 0.05,
        retry: RetryPolicy | None = None,
        faults: WebhookFaults | None = None,
        time_scale: float | None = None,
        require_https: bool = True,
        max_workers: int = 8,
        keep_bodies: bool = True,
    ):
        self.max_batch = max_batch
        self.linger = linger
        self.retry = retry or RetryPolicy()
        self.faults = faults or WebhookFaults()
        self.time_scale = time_scale  # None: the simulator's
        # Klaviyo wants https endpoints; a loopback host may also be plain http here (a receiver under test).
        self.require_https = require_https
        self.max_workers = max_workers
        # Attempts keep the bytes they sent; a benchmark pushing millions of events may keep headers only.
        self.keep_bodies = keep_bodies
        self.base_url = "http://127.0.0.1"  # the simulator sets its own: events' links point at it
        self._cond = threading.Condition(threading.RLock())
        self._stores: dict[int, tuple[Account, dict[str, Webhook]]] = {}
        self._listeners: dict[int, Callable[[list[str]], None]] = {}
        self._pending: dict[str, list[tuple[str, str]]] = {}  # webhook id -> (event id, topic) not yet sent
        self._held: dict[str, _Batch] = {}
        self._heap: list[tuple[float, int, Callable[[], None], bool]] = []  # (due, seq, job, counts)
        self._seq = 0
        self._lanes: dict[str, collections.deque[Callable[[], None]]] = {}
        self._attempts: list[Attempt] = []
        # Tracebacks of the deliverer's own failures (a test asserts there are none).
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = False

    # -- the registry and its API -------------------------------------------------------------------------
    def watch(self, account: Account) -> dict[str, Webhook]:
        """The account's webhooks (registering for its new events on first use)."""
        with self._cond:
            key = id(account)
            if key not in self._stores:
                self._stores[key] = (account, {})
                listener = self._on_events_of(account)
                self._listeners[key] = listener
                account.event_listeners.append(listener)
            return self._stores[key][1]

    def registered(self, account: Account) -> list[Webhook]:
        with self._cond:
            return list(self.watch(account).values())

    def create(
        self,
        account: Account,
        name: str,
        endpoint_url: str,
        secret_key: str,
        topics: list[str] | None = None,
        description: str | None = None,
    ) -> Webhook:
        """Register a webhook without the HTTP API (topics default to every topic of the account)."""
        topics = list(topics) if topics is not None else list(account_topics(account).values())
        now = _now_iso()
        webhook = Webhook(
            new_id(), account, name, endpoint_url, secret_key, topics, description, True, now, now
        )
        with self._cond:
            self.watch(account)[webhook.id] = webhook
        self._start()
        return webhook

    def answer(
        self,
        account: Account,
        op: Operation,
        item_id: str | None,
        params: dict[str, str],
        query: list[tuple[str, str]],
        raw_body: bytes,
        base: str,
    ) -> tuple[int, dict | None]:
        """The answer to a webhook operation whose key, scopes, revision, parameters and limits were checked:
        (status, document or None for no body)."""
        if not account.webhook_access:
            # Silent: how Klaviyo refuses an account without webhook access; a 403 permission_denied is taken.
            raise permission_denied(
                "This account cannot use the Webhooks API: only Advanced KDP customers and Klaviyo app partners can."
            )
        oid = op.operation_id
        item_id = unquote(item_id) if item_id is not None else None
        if oid == "get_webhook_topics":
            data = [_topic(t, base) for t in account_topics(account).values()]
            return 200, {"data": data, "links": collection_links(base, op, query, None, None)}
        if oid == "get_webhook_topic":
            if item_id not in account_topics(account).values():
                raise not_found(f"A webhook topic with id {item_id} does not exist.")
            return 200, {
                "data": _topic(item_id, base),
                "links": {"self": self_link(base, op, item_id, query)},
            }
        fields = [f for f in params.get("fields[webhook]", "").split(",") if f]
        include = "webhook-topics" in params.get("include", "").split(",")
        with self._cond:
            hooks = self.watch(account)
            if oid == "get_webhooks":
                items = sorted(hooks.values(), key=lambda w: (w.created_at, w.id))
                payload: dict[str, Any] = {
                    "data": [_render(w, base, fields, include) for w in items],
                    "links": collection_links(base, op, query, None, None),
                }
                if include:
                    payload["included"] = _included(items, base)
                return 200, payload
            if oid == "create_webhook":
                webhook = self._create_from(account, _document(raw_body))
                hooks[webhook.id] = webhook
                self._start()
                return 201, {"data": _render(webhook, base, fields, False), "links": _self(base, webhook)}
            webhook = hooks.get(item_id or "")
            if webhook is None:
                raise not_found(f"A webhook with id {item_id} does not exist.")
            if oid == "get_webhook":
                payload = {"data": _render(webhook, base, fields, include), "links": _self(base, webhook)}
                if include:
                    payload["included"] = _included([webhook], base)
                return 200, payload
            if oid == "update_webhook":
                self._update_from(webhook, _document(raw_body))
                return 200, {"data": _render(webhook, base, fields, False), "links": _self(base, webhook)}
            if oid == "delete_webhook":
                del hooks[webhook.id]
                self._pending.pop(webhook.id, None)
                self._held.pop(webhook.id, None)
                return 204, None
        raise not_found(f"{op.path} is not simulated.")

    def _create_from(self, account: Account, doc: dict) -> Webhook:
        data = _resource(doc, require_id=None)
        attrs = _attributes(data, {"name", "description", "endpoint_url", "secret_key"})
        for name in ("name", "endpoint_url", "secret_key"):
            if attrs.get(name) is None:
                raise invalid(f"'{name}' is a required field.", pointer=f"/data/attributes/{name}")
        relationships = data.get("relationships")
        if not isinstance(relationships, dict) or "webhook-topics" not in relationships:
            raise invalid("'webhook-topics' is a required relationship.", pointer="/data/relationships")
        name = _name(attrs["name"])
        url = self._endpoint(attrs["endpoint_url"])
        secret = _secret(attrs["secret_key"])
        description = _description(attrs.get("description"))
        topics = _topics(account, relationships["webhook-topics"])
        now = _now_iso()
        return Webhook(new_id(), account, name, url, secret, topics, description, True, now, now)

    def _update_from(self, webhook: Webhook, doc: dict) -> None:
        data = _resource(doc, require_id=webhook.id)
        attrs = _attributes(data, {"name", "description", "endpoint_url", "secret_key", "enabled"})
        # Validate everything before changing anything: a refused update leaves the webhook as it was.
        # Silent: what null means for a nullable attribute of the update; "leave it as it is" (description: clear).
        changes: dict[str, Any] = {}
        if attrs.get("name") is not None:
            changes["name"] = _name(attrs["name"])
        if "description" in attrs:
            changes["description"] = _description(attrs["description"])
        if attrs.get("endpoint_url") is not None:
            changes["endpoint_url"] = self._endpoint(attrs["endpoint_url"])
        if attrs.get("secret_key") is not None:
            changes["secret_key"] = _secret(attrs["secret_key"])
        if attrs.get("enabled") is not None:
            if not isinstance(attrs["enabled"], bool):
                raise invalid("'enabled' must be a boolean.", pointer="/data/attributes/enabled")
            changes["enabled"] = attrs["enabled"]
        relationships = data.get("relationships")
        if relationships is not None:
            if not isinstance(relationships, dict):
                raise invalid("'relationships' must be an object.", pointer="/data/relationships")
            if "webhook-topics" in relationships:
                changes["topics"] = _topics(webhook.account, relationships["webhook-topics"])
        for key, value in changes.items():
            setattr(webhook, key, value)
        if changes.get("enabled") is False:
            self._pending.pop(webhook.id, None)
        if changes.get("enabled") is True:
            webhook.failing_since = None
        webhook.updated_at = _now_iso()

    def _endpoint(self, value: Any) -> str:
        pointer = "/data/attributes/endpoint_url"
        if not isinstance(value, str) or not value.strip():
            raise invalid("'endpoint_url' must be a URL.", pointer=pointer)
        split = urlsplit(value.strip())
        if split.scheme not in ("https", "http") or not split.hostname:
            raise invalid(f"'{value}' is not a valid URL.", pointer=pointer)
        if split.scheme == "http" and self.require_https and not _loopback(split.hostname):
            raise invalid("The endpoint URL must use https.", pointer=pointer)
        return value.strip()

    # -- delivery --------------------------------------------------------------------------------------------
    def _on_events_of(self, account: Account) -> Callable[[list[str]], None]:
        def on_events(ids: list[str]) -> None:
            self.enqueue(account, ids)

        return on_events

    def enqueue(self, account: Account, event_ids: list[str]) -> None:
        """Queue new events of the account for every enabled webhook whose topics name their metric."""
        with self._cond:
            entry = self._stores.get(id(account))
            hooks = [w for w in entry[1].values() if w.enabled] if entry else []
        if not hooks:
            return
        topics = account_topics(account)
        items = []
        for eid in event_ids:
            index = account.event_index(eid)
            if index is not None:
                items.append((eid, topics[account.event_metric_id(index)]))
        now = time.monotonic()
        with self._cond:
            for webhook in hooks:
                matched = [(eid, topic) for eid, topic in items if topic in webhook.topics]
                if not matched or not webhook.enabled:
                    continue
                pending = self._pending.get(webhook.id)
                if pending is None:
                    pending = self._pending[webhook.id] = []
                    self._schedule(
                        now + self.linger, lambda wid=webhook.id: self._flush_one(wid), counts=False
                    )
                pending.extend(matched)
                while len(pending) >= self.max_batch:
                    self._cut(webhook, pending[: self.max_batch])
                    del pending[: self.max_batch]
                if not pending:
                    del self._pending[webhook.id]
            self._cond.notify_all()

    def flush(self) -> None:
        """Send every waiting batch now, without its linger."""
        with self._cond:
            for wid in list(self._pending):
                self._flush_one(wid)

    def _flush_one(self, webhook_id: str) -> None:
        with self._cond:
            pending = self._pending.pop(webhook_id, None)
            webhook = self._find(webhook_id)
            if pending and webhook is not None and webhook.enabled:
                self._cut(webhook, pending)

    def _cut(self, webhook: Webhook, items: list[tuple[str, str]]) -> None:
        """A batch is formed: send it (and a held one after it), or hold it back (out_of_order)."""
        batch = _Batch(new_id(), webhook.id, webhook.account, list(items), self.faults.draw())
        if "out_of_order" in batch.faults and webhook.id not in self._held:
            self._held[webhook.id] = batch
            self._schedule(time.monotonic() + self.faults.hold, lambda: self._release(batch), counts=False)
            return
        self._lane(webhook.id, lambda: self._first_send(batch))
        held = self._held.pop(webhook.id, None)
        if held is not None:
            self._lane(webhook.id, lambda: self._first_send(held))

    def _release(self, batch: _Batch) -> None:
        with self._cond:
            if self._held.get(batch.webhook_id) is batch:
                del self._held[batch.webhook_id]
                self._lane(batch.webhook_id, lambda: self._first_send(batch))

    def _first_send(self, batch: _Batch) -> None:
        with self._cond:
            webhook = self._find(batch.webhook_id)
            if webhook is None or not webhook.enabled:
                return
            url, secret, wid = webhook.endpoint_url, webhook.secret_key, webhook.id
        sent_at = time.time()
        request = self._request(batch, wid, secret, sent_at)
        if "bad_signature" in batch.faults:
            forged = replace(
                request,
                headers={
                    **request.headers,
                    SIGNATURE_HEADER: sign(request.body, "x" + secret, request.headers[TIMESTAMP_HEADER]),
                },
            )
            self._post(batch, url, forged, "bad_signature", 1)
        if "wrong_webhook_id" in batch.faults:
            self._post(
                batch,
                url,
                replace(request, headers={**request.headers, WEBHOOK_ID_HEADER: new_id()}),
                "wrong_webhook_id",
                1,
            )
        self._deliver(batch, url, request)
        if "duplicate" in batch.faults:
            self._post(batch, url, request, "duplicate", 1)
        if "replay" in batch.faults:
            copy = request
            if self.faults.replay_stale_by > 0:
                copy = self._request(batch, wid, secret, sent_at - self.faults.replay_stale_by)
            with self._cond:
                self._schedule(
                    time.monotonic() + self.faults.replay_delay,
                    lambda: self._lane(wid, lambda: self._post(batch, url, copy, "replay", 1)),
                )

    def _retry(self, batch: _Batch) -> None:
        with self._cond:
            webhook = self._find(batch.webhook_id)
            if webhook is None or not webhook.enabled:
                return
            url, secret, wid = webhook.endpoint_url, webhook.secret_key, webhook.id
        # Silent: what a retry re-sends; here a fresh request (new timestamp, meta.timestamp and signature) of
        # the same events, as "when the webhook request was sent" reads, so a receiver must dedupe on the events.
        self._deliver(batch, url, self._request(batch, wid, secret, time.time()))

    def _deliver(self, batch: _Batch, url: str, request: SignedDelivery) -> None:
        batch.attempts += 1
        attempt = self._post(batch, url, request, None, batch.attempts)
        with self._cond:
            webhook = self._find(batch.webhook_id)
            if webhook is None:
                return
            if attempt.ok:
                webhook.failing_since = None
                return
            now = time.monotonic()
            if webhook.failing_since is None:
                webhook.failing_since = now
            if now - webhook.failing_since >= self.retry.disable_after * self._scale():
                webhook.enabled = False  # Klaviyo disables a webhook failing for over 48 hours
                webhook.updated_at = _now_iso()
                self._pending.pop(webhook.id, None)
                return
            if self.retry.max_attempts is not None and batch.attempts >= self.retry.max_attempts:
                return
            wait = self.retry.delay(batch.attempts) * self._scale()
            self._schedule(now + wait, lambda: self._lane(batch.webhook_id, lambda: self._retry(batch)))

    def _request(self, batch: _Batch, webhook_id: str, secret: str, at: float) -> SignedDelivery:
        """The batch as a request sent at `at`: each event's payload is what GET /api/events/{id} answers."""
        renderer = Renderer(batch.account, self.base_url, {})
        data = [
            {"external_id": eid, "payload": {"data": renderer.one("event", eid)}, "topic": topic}
            for eid, topic in batch.items
        ]
        meta = {
            "klaviyo_account_id": batch.account.account_id,
            "klaviyo_webhook_id": webhook_id,
            "timestamp": meta_timestamp(at),
            # Not in the docs' list, but in a captured real delivery (nickdnk/klaviyo's tests), with this value:
            # a receiver must tolerate keys it does not know.
            "version": META_VERSION,
        }
        return signed_delivery({"data": data, "meta": meta}, secret, http_date(at), webhook_id)

    def _post(
        self, batch: _Batch, url: str, request: SignedDelivery, fault: str | None, number: int
    ) -> Attempt:
        return self._send(batch.webhook_id, batch.id, batch.event_ids, url, request, fault, number)

    def _send(
        self,
        webhook_id: str,
        batch_id: str,
        event_ids: tuple[str, ...],
        url: str,
        request: SignedDelivery,
        fault: str | None,
        number: int,
    ) -> Attempt:
        started, at = time.monotonic(), time.time()
        status, error = post(url, request, self.retry.timeout)
        attempt = Attempt(
            webhook_id,
            batch_id,
            number,
            event_ids,
            status,
            error,
            at,
            time.monotonic() - started,
            fault,
            url,
            dict(request.headers),
            request.body if self.keep_bodies else b"",
        )
        with self._cond:
            self._attempts.append(attempt)
            self._cond.notify_all()
        return attempt

    def replay(self, attempt: Attempt) -> Attempt:
        """Send a recorded request again now, byte for byte (its original timestamp and signature)."""
        request = SignedDelivery(attempt.body, attempt.headers)
        return self._send(
            attempt.webhook_id,
            attempt.batch_id,
            attempt.event_ids,
            attempt.url,
            request,
            "replay",
            attempt.attempt,
        )

    # -- what happened --------------------------------------------------------------------------------------
    def attempts(self, webhook_id: str | None = None) -> list[Attempt]:
        """Every request sent so far (to one webhook, or all), in the order they were sent."""
        with self._cond:
            return [a for a in self._attempts if webhook_id is None or a.webhook_id == webhook_id]

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until nothing is waiting, held, scheduled or being sent; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._held or self._lanes or any(entry[3] for entry in self._heap):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def wait_for(self, predicate: Callable[[list[Attempt]], bool], timeout: float = 10.0) -> bool:
        """Wait until `predicate(attempts)` holds; False if `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(list(self._attempts)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    # -- admin hooks ----------------------------------------------------------------------------------------
    def admin(self, path: str, args: dict[str, str], account: Account) -> dict:
        """The `/_sim/webhooks/...` hooks (see server.Simulator's admin): raises KeyError/ValueError on bad input.

        /faults?bad_signature=1&duplicate=0.5&replay_delay=2&replay_stale_by=600&hold=1&queue=bad_signature,
        duplicate+replay,none (one fault set per batch, kinds joined by '+'); /settings?max_batch=&linger=&
        time_scale=&timeout=&first_delay=&factor=&max_delay=&disable_after=&max_attempts=&require_https=;
        /access?enabled=0|1; /attempts?webhook_id=; /created?ids=a,b; /flush; /idle?timeout=5."""
        action = path.removeprefix("/_sim/webhooks/")
        if action == "faults":
            for kind in (*FAULT_KINDS, "replay_delay", "replay_stale_by", "hold"):
                if kind in args:
                    setattr(self.faults, kind, float(args[kind]))
            if "queue" in args:
                sets = [s for s in args["queue"].split(",") if s]
                self.faults.queue(*(None if s == "none" else set(s.split("+")) for s in sets))
            return {"faults": {k: getattr(self.faults, k) for k in (*FAULT_KINDS, "replay_delay")}}
        if action == "settings":
            retry_fields = ("timeout", "first_delay", "factor", "max_delay", "disable_after")
            changes: dict[str, Any] = {k: float(args[k]) for k in retry_fields if k in args}
            if "max_attempts" in args:
                changes["max_attempts"] = int(args["max_attempts"]) or None
            self.retry = replace(self.retry, **changes)
            if "max_batch" in args:
                self.max_batch = max(1, min(MAX_BATCH, int(args["max_batch"])))
            if "linger" in args:
                self.linger = float(args["linger"])
            if "time_scale" in args:
                self.time_scale = float(args["time_scale"])
            if "require_https" in args:
                self.require_https = args["require_https"] not in ("0", "false")
            return {"max_batch": self.max_batch, "linger": self.linger, "time_scale": self._scale()}
        if action == "access":
            account.webhook_access = args["enabled"] not in ("0", "false")
            return {"webhook_access": account.webhook_access}
        if action == "attempts":
            return {"attempts": [a.as_json() for a in self.attempts(args.get("webhook_id"))]}
        if action == "created":
            with account.lock:
                created = dict(account.event_created_at)
            if "ids" in args:
                created = {i: created[i] for i in args["ids"].split(",") if i in created}
            return {"created_at": created}
        if action == "flush":
            self.flush()
            return {"flushed": True}
        if action == "idle":
            return {"idle": self.wait_idle(float(args.get("timeout", 10)))}
        raise ValueError(f"unknown webhook hook {path}")

    # -- plumbing -------------------------------------------------------------------------------------------
    def _scale(self) -> float:
        return 1.0 if self.time_scale is None else self.time_scale

    def _find(self, webhook_id: str) -> Webhook | None:
        for _, hooks in self._stores.values():
            if webhook_id in hooks:
                return hooks[webhook_id]
        return None

    def _schedule(self, due: float, job: Callable[[], None], counts: bool = True) -> None:
        """Run `job` on the deliverer's thread at `due` (monotonic); `counts=False` for a job whose work is
        already visible elsewhere (a linger's flush: the pending events; a hold's release: the held batch)."""
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (due, self._seq, job, counts))
            self._cond.notify_all()

    def _lane(self, webhook_id: str, job: Callable[[], None]) -> None:
        """Run `job` after the webhook's earlier requests: one webhook's requests go out one at a time."""
        with self._cond:
            if self._stopping:
                return
            lane = self._lanes.get(webhook_id)
            if lane is not None:
                lane.append(job)
                return
            self._lanes[webhook_id] = collections.deque([job])
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="klaviyo-sim-webhook")
            self._pool.submit(self._run_lane, webhook_id)

    def _run_lane(self, webhook_id: str) -> None:
        while True:
            with self._cond:
                lane = self._lanes[webhook_id]
                if not lane or self._stopping:
                    del self._lanes[webhook_id]
                    self._cond.notify_all()
                    return
                job = lane[0]
            self._run(job)
            with self._cond:
                lane.popleft()

    def _run(self, job: Callable[[], None]) -> None:
        """Run a job; a bug in one is kept in `errors` (the deliverer and the webhook's lane go on)."""
        try:
            job()
        except Exception:  # noqa: BLE001
            with self._cond:
                self.errors.append(traceback.format_exc())

    def _start(self) -> None:
        with self._cond:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._dispatch, name="klaviyo-sim-webhooks", daemon=True
                )
                self._thread.start()

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for job in due:
                self._run(job)
            with self._cond:
                self._cond.notify_all()

    def stop(self) -> None:
        """Stop delivering: the thread ends, scheduled requests are dropped, event listeners removed."""
        with self._cond:
            self._stopping = True
            self._heap.clear()
            self._cond.notify_all()
            for account, _ in self._stores.values():
                listener = self._listeners.get(id(account))
                if listener in account.event_listeners:
                    account.event_listeners.remove(listener)
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def post(url: str, request: SignedDelivery, timeout: float) -> tuple[int | None, str | None]:
    """POST a delivery; (status, None), or (None, the error) on a connection error or timeout."""
    split = urlsplit(url)
    cls = http.client.HTTPSConnection if split.scheme == "https" else http.client.HTTPConnection
    conn = cls(split.hostname or "", split.port, timeout=timeout)
    target = (split.path or "/") + (f"?{split.query}" if split.query else "")
    try:
        conn.request("POST", target, request.body, request.headers)
        response = conn.getresponse()
        response.read()
        return response.status, None
    except (OSError, http.client.HTTPException) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


# -- rendering and validation ---------------------------------------------------------------------------------
def _render(webhook: Webhook, base: str, fields: list[str], include: bool) -> dict:
    split = urlsplit(webhook.endpoint_url)
    attrs = {
        "name": webhook.name,
        "description": webhook.description,
        # "The url to send webhook requests to, truncated for security" (spec): its origin, as the example.
        "endpoint_url": f"{split.scheme}://{split.netloc}",
        "enabled": webhook.enabled,
        "created_at": webhook.created_at,
        "updated_at": webhook.updated_at,
    }
    if fields:
        attrs = {k: v for k, v in attrs.items() if k in fields}
    relationship: dict[str, Any] = {
        "links": {
            "self": f"{base}/api/webhooks/{webhook.id}/relationships/webhook-topics/",
            "related": f"{base}/api/webhooks/{webhook.id}/webhook-topics/",
        }
    }
    if include:  # linkage with include=, as the other resources of the simulator
        relationship["data"] = [{"type": "webhook-topic", "id": t} for t in webhook.topics]
    return {
        "type": "webhook",
        "id": webhook.id,
        "attributes": attrs,
        "relationships": {"webhook-topics": relationship},
        "links": {"self": f"{base}/api/webhooks/{webhook.id}/"},
    }


def _topic(tid: str, base: str) -> dict:
    return {"type": "webhook-topic", "id": tid, "links": {"self": f"{base}/api/webhook-topics/{tid}/"}}


def _included(webhooks: list[Webhook], base: str) -> list[dict]:
    seen = dict.fromkeys(t for w in webhooks for t in w.topics)
    return [_topic(t, base) for t in seen]


def _self(base: str, webhook: Webhook) -> dict:
    return {"self": f"{base}/api/webhooks/{webhook.id}/"}


def _document(raw: bytes) -> dict:
    try:
        doc = json.loads(raw or b"null")
    except ValueError:
        raise invalid("The request body is not valid JSON.") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise invalid("'data' is a required object.", pointer="/data")
    return doc


def _resource(doc: dict, require_id: str | None) -> dict:
    data = doc["data"]
    if data.get("type") != "webhook":
        raise ApiError(
            409, "conflict", "Conflict.", "The resource type must be 'webhook'.", {"pointer": "/data/type"}
        )
    if require_id is not None and data.get("id") != require_id:
        raise ApiError(
            409,
            "conflict",
            "Conflict.",
            "The id in the body does not match the URL.",
            {"pointer": "/data/id"},
        )
    return data


def _attributes(data: dict, allowed: set[str]) -> dict:
    attrs = data.get("attributes")
    if not isinstance(attrs, dict):
        raise invalid("'attributes' is a required object.", pointer="/data/attributes")
    for name in attrs:
        if name not in allowed:
            raise invalid(
                f"'{name}' is not a valid field for the resource 'webhook'.",
                pointer=f"/data/attributes/{name}",
            )
    return attrs


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("'name' must be a non-empty string.", pointer="/data/attributes/name")
    return value


def _description(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise invalid("'description' must be a string.", pointer="/data/attributes/description")
    return value


def _secret(value: Any) -> str:
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        raise invalid(
            f"'secret_key' must be a string of at least {MIN_SECRET_LENGTH} characters.",
            pointer="/data/attributes/secret_key",
        )
    return value


def _topics(account: Account, relationship: Any) -> list[str]:
    pointer = "/data/relationships/webhook-topics/data"
    linkage = relationship.get("data") if isinstance(relationship, dict) else None
    if not isinstance(linkage, list) or not linkage:
        # Silent: whether a webhook may have no topic; it could never fire, so it is refused.
        raise invalid("A webhook needs at least one topic.", pointer=pointer)
    known = set(account_topics(account).values())
    out: list[str] = []
    for k, item in enumerate(linkage):
        if (
            not isinstance(item, dict)
            or item.get("type") != "webhook-topic"
            or not isinstance(item.get("id"), str)
        ):
            raise invalid("Each topic is {'type': 'webhook-topic', 'id': ...}.", pointer=f"{pointer}/{k}")
        if item["id"] not in known:
            raise invalid(
                f"'{item['id']}' is not a webhook topic of this account.", pointer=f"{pointer}/{k}/id"
            )
        if item["id"] not in out:
            out.append(item["id"])
    return out


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
