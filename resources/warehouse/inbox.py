"""The webhook inbox (migration 013): deliveries Klaviyo pushed, one row per event until it is loaded.

- `store_delivery` (the receiver): the delivery row and its events, in one transaction; an event already in
  the inbox (a redelivery) is counted on its row, never added twice.
- `claim_pending`, `mark_loaded`, `mark_rejected` (the drain): pending events in arrival order, locked for the
  caller's transaction (`FOR UPDATE SKIP LOCKED`: two drains never take the same rows), and their outcome
  written in that same transaction.
- `pending_summary` (the sensor), `purge_loaded` (retention).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, text

from resources.textsafe import escape_text, unescape_json
from resources.webhooks import Delivery

_PENDING = "loaded_at IS NULL AND load_error IS NULL AND NOT unknown_topic"


@dataclass(frozen=True)
class StoredDelivery:
    """What storing a delivery did: its row's id and how its events fared."""

    delivery_id: int
    events: int
    new_events: int
    repeated_events: int
    unknown_topic_events: int


@dataclass(frozen=True)
class PendingEvent:
    """An inbox row waiting for its load: its key, arrival number and payload (NULs restored)."""

    account_id: str
    event_id: str
    seq: int
    topic: str
    payload: dict[str, Any]


def store_delivery(engine: Engine, delivery: Delivery) -> StoredDelivery:
    """Record a verified delivery and its events in one transaction (commits before the receiver answers)."""
    # In key order: two deliveries sharing events lock their rows in the same order (no deadlock between them).
    events = sorted(delivery.events, key=lambda e: e.event_id)
    with engine.begin() as conn:
        delivery_id = conn.execute(
            text(
                """INSERT INTO klaviyo_webhook_deliveries
                       (account_id, webhook_id, sent_at, meta, body_sha256, body_bytes, items, new_events,
                        repeated_events, unknown_topic_events)
                   VALUES (:account, :webhook, :sent_at, CAST(:meta AS jsonb), :sha, :bytes, :items, 0, 0, 0)
                   RETURNING id"""
            ),
            {
                "account": delivery.account_id,
                "webhook": delivery.webhook_id,
                "sent_at": delivery.sent_at,
                "meta": delivery.meta_json,
                "sha": delivery.body_sha256,
                "bytes": delivery.body_bytes,
                "items": delivery.items,
            },
        ).scalar_one()
        inserted: list[bool] = []
        if events:
            # One statement for the batch (up to Klaviyo's 1,000 events); each event id occurs once in it.
            inserted = list(
                conn.execute(
                    text(
                        """INSERT INTO klaviyo_webhook_inbox AS t
                               (account_id, event_id, topic, unknown_topic, webhook_id, payload,
                                first_delivery_id, last_delivery_id)
                           SELECT :account, e.event_id, e.topic, NOT e.known, :webhook, CAST(e.payload AS jsonb),
                                  :delivery, :delivery
                           FROM unnest(CAST(:ids AS text[]), CAST(:topics AS text[]), CAST(:known AS boolean[]),
                                       CAST(:payloads AS text[])) AS e(event_id, topic, known, payload)
                           ON CONFLICT (account_id, event_id) DO UPDATE
                               SET deliveries = t.deliveries + 1, last_delivery_id = excluded.last_delivery_id,
                                   last_received_at = now()
                           RETURNING (xmax = 0)"""
                    ),
                    {
                        "account": delivery.account_id,
                        "webhook": delivery.webhook_id,
                        "delivery": delivery_id,
                        "ids": [e.event_id for e in events],
                        "topics": [e.topic for e in events],
                        "known": [e.known_topic for e in events],
                        "payloads": [e.payload_json for e in events],
                    },
                ).scalars()
            )
        new = sum(inserted)
        unknown = sum(not e.known_topic for e in events)
        conn.execute(
            text(
                """UPDATE klaviyo_webhook_deliveries
                   SET new_events = :new, repeated_events = :repeated, unknown_topic_events = :unknown
                   WHERE id = :id"""
            ),
            {"new": new, "repeated": len(events) - new, "unknown": unknown, "id": delivery_id},
        )
    return StoredDelivery(delivery_id, len(events), new, len(events) - new, unknown)


def claim_pending(conn: Connection, limit: int) -> list[PendingEvent]:
    """Up to `limit` pending events (event topics, neither loaded nor rejected), oldest first, locked until the
    caller's transaction ends; rows another transaction holds are skipped."""
    rows = conn.execute(
        text(
            f"""SELECT account_id, event_id, seq, topic, payload FROM klaviyo_webhook_inbox
                WHERE {_PENDING} ORDER BY seq LIMIT :n FOR UPDATE SKIP LOCKED"""
        ),
        {"n": limit},
    ).all()
    return [PendingEvent(r.account_id, r.event_id, r.seq, r.topic, unescape_json(r.payload)) for r in rows]


def mark_loaded(conn: Connection, account_id: str, event_ids: list[str]) -> int:
    """Record these events as loaded into klaviyo_events (now, in the caller's transaction)."""
    if not event_ids:
        return 0
    return conn.execute(
        text(
            """UPDATE klaviyo_webhook_inbox SET loaded_at = now()
               WHERE account_id = :a AND event_id = ANY(:ids) AND loaded_at IS NULL"""
        ),
        {"a": account_id, "ids": event_ids},
    ).rowcount


def mark_rejected(conn: Connection, account_id: str, reasons: dict[str, str]) -> int:
    """Record why the events transform rejected these events (they leave the pending set)."""
    if not reasons:
        return 0
    return conn.execute(
        text(
            """UPDATE klaviyo_webhook_inbox AS t SET load_error = r.reason
               FROM unnest(CAST(:ids AS text[]), CAST(:reasons AS text[])) AS r(event_id, reason)
               WHERE t.account_id = :a AND t.event_id = r.event_id AND t.loaded_at IS NULL"""
        ),
        {"a": account_id, "ids": list(reasons), "reasons": [escape_text(r)[:2000] for r in reasons.values()]},
    ).rowcount


@dataclass(frozen=True)
class PendingSummary:
    """How many events wait for their load, and the arrival number of the newest (None when none waits)."""

    count: int
    newest_seq: int | None
    oldest_received_at: dt.datetime | None


def pending_summary(conn: Connection) -> PendingSummary:
    """The pending events at a glance (one index scan), for the sensor."""
    count, newest, oldest = conn.execute(
        text(f"SELECT count(*), max(seq), min(received_at) FROM klaviyo_webhook_inbox WHERE {_PENDING}")
    ).one()
    return PendingSummary(count, newest, oldest)


def purge_loaded(conn: Connection, older_than: dt.datetime) -> tuple[int, int]:
    """Delete inbox rows loaded before `older_than` (their events live on in klaviyo_events) and deliveries
    received before it; rows pending, rejected or of unknown topics are kept. Returns (events, deliveries)."""
    events = conn.execute(
        text("DELETE FROM klaviyo_webhook_inbox WHERE loaded_at < :t"), {"t": older_than}
    ).rowcount
    deliveries = conn.execute(
        text("DELETE FROM klaviyo_webhook_deliveries WHERE received_at < :t"), {"t": older_than}
    ).rowcount
    return events, deliveries
