"""klaviyo/webhook_events: events Klaviyo pushed (the webhook inbox) into klaviyo_events, the way polling loads.

Each batch of pending inbox rows goes through the events transform polling uses (`TRANSFORMS["events"]`) and the
guarded merge every write uses (`Warehouse.upsert_frame`, with the catalogue's key and guard for events, monthly
partitions made on demand), and is marked loaded in the same transaction: a crash leaves the batch pending
and the next drain loads it once. The key (account, id, datetime) is the one polling writes, so an event
that arrives by webhook and again by polling is one row. Polling (klaviyo/events) stays on as the safety net;
this asset neither reads Klaviyo nor moves the events watermark.
"""

import datetime as dt
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd
from pydantic import Field
from sqlalchemy import Connection

from assets.declaration import step_retry_policy
from assets.table_metadata import code_version, table_metadata
from assets.transform import SHAPES, TRANSFORMS
from resources import settings
from resources.catalogue import CATALOGUE
from resources.warehouse import UpsertCounts, Warehouse, inbox
from resources.webhooks import event_resource

UTC = dt.UTC
EVENTS = CATALOGUE["events"]
# Loaded inbox rows and deliveries older than this are deleted (their events live on in klaviyo_events).
KEEP_LOADED_DAYS = 30


@dataclass
class DrainOutcome:
    """What a drain did: batches, events loaded and rejected (id -> reason), and the merge's counts."""

    batches: int = 0
    loaded: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    accounts: set[str] = field(default_factory=set)
    purged_events: int = 0
    purged_deliveries: int = 0
    seconds: float = 0.0


def drain_inbox(
    warehouse: Warehouse,
    log: logging.Logger | None = None,
    batch_rows: int = EVENTS.batch_rows,
    max_batches: int | None = None,
) -> DrainOutcome:
    """Load pending inbox events into klaviyo_events, a batch per transaction (the batch marked loaded in it),
    until none is pending (or `max_batches` were loaded)."""
    log = log or logging.getLogger(__name__)
    began = time.monotonic()
    outcome = DrainOutcome()
    while max_batches is None or outcome.batches < max_batches:
        with warehouse.transaction() as conn:
            claimed = inbox.claim_pending(conn, batch_rows)
            if not claimed:
                break
            outcome.batches += 1
            by_account: dict[str, list[inbox.PendingEvent]] = defaultdict(list)
            for pending in claimed:
                by_account[pending.account_id].append(pending)
            for account_id, pending in by_account.items():
                _load(conn, warehouse, account_id, pending, outcome, log)
        if len(claimed) < batch_rows:
            break
    outcome.seconds = time.monotonic() - began
    return outcome


def _load(
    conn: Connection,
    warehouse: Warehouse,
    account_id: str,
    pending: list[inbox.PendingEvent],
    outcome: DrainOutcome,
    log: logging.Logger,
) -> None:
    """One account's share of a batch: transform, merge, and mark each event loaded or rejected."""
    records = [r for r in (event_resource(p.payload) for p in pending) if r is not None]
    result = TRANSFORMS["events"](records, account_id, {})
    frame = result.frame
    loaded = set(frame["id"]) if not frame.empty else set()
    reasons = {r.id: r.reason for r in result.rejected if r.id is not None and r.id not in loaded}
    for p in pending:
        if p.event_id not in loaded and p.event_id not in reasons:
            reasons[p.event_id] = "the payload holds no event"
    if not frame.empty:
        warehouse.ensure_month_partitions(conn, EVENTS.table, _months(frame[EVENTS.month_partitions_on]))
        outcome.counts += warehouse.upsert_frame(
            conn, EVENTS.table, frame, key=EVENTS.key, guard=EVENTS.guard
        )
    outcome.loaded += inbox.mark_loaded(conn, account_id, sorted(loaded))
    inbox.mark_rejected(conn, account_id, reasons)
    for event_id, reason in list(reasons.items())[:20]:
        log.warning("klaviyo/webhook_events: rejected event %s: %s", event_id, reason)
    outcome.rejected.update(reasons)
    outcome.accounts.add(account_id)


def purge_inbox(warehouse: Warehouse, keep_loaded_days: int = KEEP_LOADED_DAYS) -> tuple[int, int]:
    """Delete inbox rows loaded, and deliveries received, more than `keep_loaded_days` ago; (events, deliveries)."""
    cutoff = dt.datetime.now(UTC) - dt.timedelta(days=keep_loaded_days)
    with warehouse.transaction() as conn:
        return inbox.purge_loaded(conn, cutoff)


def _months(stamps: pd.Series) -> list[tuple[int, int]]:
    """The (year, month) partitions these datetimes fall in."""
    return sorted({(t.year, t.month) for t in stamps.dropna()})


class WebhookDrainConfig(dg.Config):
    """Run configuration of the webhook drain."""

    batch_rows: int = Field(
        default=EVENTS.batch_rows, ge=1, description="Inbox events loaded per transaction (polling's batch)."
    )
    keep_loaded_days: int = Field(
        default=KEEP_LOADED_DAYS,
        ge=0,
        description="Loaded inbox rows and deliveries older than this many days are deleted (their events live "
        "on in klaviyo_events); 0 keeps everything. Pending, rejected and unknown-topic rows are always kept.",
    )


@dg.asset(
    name="webhook_events",
    key_prefix=["klaviyo"],
    group_name="klaviyo_webhooks",
    kinds={"python", "pandas", "postgres"},
    owners=settings.asset_owners(),
    code_version=code_version(EVENTS, SHAPES.get("events")),  # as klaviyo/events: the same load
    description="Events Klaviyo pushed by system webhook (klaviyo_webhook_inbox) loaded into klaviyo_events "
    "through the events transform and guarded upsert polling uses: one row per event, whichever way it came. "
    "Requested by klaviyo_webhook_sensor while events are pending.",
    retry_policy=step_retry_policy(),
    metadata={"table": EVENTS.table, "dagster/table_name": EVENTS.table},
)
def webhook_events(
    context: dg.AssetExecutionContext, config: WebhookDrainConfig, warehouse: Warehouse
) -> dg.MaterializeResult:
    warehouse.require_migrated()
    outcome = drain_inbox(warehouse, log=context.log, batch_rows=config.batch_rows)
    if config.keep_loaded_days:
        outcome.purged_events, outcome.purged_deliveries = purge_inbox(warehouse, config.keep_loaded_days)
    with warehouse.engine.connect() as conn:
        left = inbox.pending_summary(conn).count
    context.log.info(
        f"klaviyo/webhook_events: {outcome.loaded} events loaded in {outcome.batches} batches "
        f"({outcome.counts.inserted} inserted, {outcome.counts.updated} updated, {outcome.counts.skipped} "
        f"already there), {len(outcome.rejected)} rejected, {left} pending, in {outcome.seconds:.1f} s"
    )
    metadata: dict = {
        "dagster/row_count": outcome.counts.total,
        "events_loaded": outcome.loaded,
        "rows_inserted": outcome.counts.inserted,
        "rows_updated": outcome.counts.updated,
        "rows_skipped": outcome.counts.skipped,
        "events_rejected": len(outcome.rejected),
        "events_pending": left,
        "batches": outcome.batches,
        "accounts": dg.MetadataValue.json(sorted(outcome.accounts)),
        "inbox_rows_purged": outcome.purged_events,
        "deliveries_purged": outcome.purged_deliveries,
        "seconds": round(outcome.seconds, 3),
        **table_metadata(warehouse, EVENTS.table),
    }
    if outcome.rejected:
        metadata["rejected_examples"] = dg.MetadataValue.json(
            [{"id": i, "reason": r} for i, r in list(outcome.rejected.items())[:20]]
        )
    return dg.MaterializeResult(metadata=metadata)
