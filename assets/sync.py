"""Sync one entity for one window: extract with the client, transform, load with the guarded upsert.

The data, the status row and the run row commit in one transaction: a failure leaves the warehouse and the
watermark exactly as they were, and a rerun redoes the window with the same result.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from assets.transform import SHAPES, Rejected, transform
from resources import sync_status
from resources.klaviyo import KlaviyoClient, Page
from resources.warehouse import UpsertCounts, Warehouse

UTC = dt.UTC
BATCH_ROWS = 5_000
INCLUDES = {"tags": ("tag-group",)}


@dataclass(frozen=True)
class SyncRequest:
    entity: str
    window_start: dt.datetime | None  # None: from the beginning (unpartitioned snapshots)
    window_end: dt.datetime | None
    full_refresh: bool = False
    lookback: dt.timedelta = dt.timedelta(hours=1)
    run_id: str | None = None
    partition_key: str | None = None


@dataclass
class SyncOutcome:
    entity: str
    account_id: str
    read_start: dt.datetime | None
    read_end: dt.datetime | None
    records_read: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: list[Rejected] = field(default_factory=list)
    watermark: dt.datetime | None = None
    previous_watermark: dt.datetime | None = None
    seconds: float = 0.0
    preview: pd.DataFrame | None = None


def read_window(request: SyncRequest, previous_watermark: dt.datetime | None, now: dt.datetime) -> tuple:
    """The window actually read: the partition's, started from the watermark minus the lookback when the
    partition is live (it holds `now`) and the run is incremental."""
    start, end = request.window_start, request.window_end
    live = end is None or end > now
    if live and not request.full_refresh and previous_watermark is not None:
        resume = previous_watermark - request.lookback
        start = resume if start is None else max(start, resume)
    return start, end


def _batches(pages: Iterator[Page], size: int) -> Iterator[tuple[list[dict], dict]]:
    """Pages regrouped into batches of about `size` records that share a pass context."""
    batch: list[dict] = []
    context: dict = {}
    for page in pages:
        if batch and page.context != context:
            yield batch, context
            batch = []
        context = page.context
        batch.extend(page.records)
        if len(batch) >= size:
            yield batch, context
            batch = []
    if batch:
        yield batch, context


def sync_entity(
    request: SyncRequest,
    client: KlaviyoClient,
    warehouse: Warehouse,
    log: logging.Logger | None = None,
    now: dt.datetime | None = None,
) -> SyncOutcome:
    log = log or logging.getLogger(__name__)
    began = time.monotonic()
    started_at = dt.datetime.now(UTC)
    now = now or started_at
    shape = SHAPES[request.entity]
    account_id = client.account_id()
    engine = warehouse.engine
    previous = sync_status.watermark(engine, account_id, request.entity)
    read_start, read_end = read_window(request, previous, now)
    outcome = SyncOutcome(request.entity, account_id, read_start, read_end, previous_watermark=previous)
    run = sync_status.RunRecord(
        account_id=account_id,
        entity=request.entity,
        run_id=request.run_id,
        partition_key=request.partition_key,
        window_start=read_start,
        window_end=read_end,
        full_refresh=request.full_refresh,
        started_at=started_at,
    )
    sync_status.mark_started(engine, account_id, request.entity, request.run_id)
    try:
        newest: dt.datetime | None = None
        with warehouse.transaction() as conn:
            pages = client.list_window(
                request.entity, read_start, read_end, include=INCLUDES.get(request.entity, ())
            )
            for records, context in _batches(pages, BATCH_ROWS):
                outcome.records_read += len(records)
                result = transform(request.entity, records, account_id, context)
                outcome.rejected += result.rejected
                for bad in result.rejected:
                    log.warning("klaviyo/%s: rejected record %s: %s", request.entity, bad.id, bad.reason)
                frame = result.frame
                if frame.empty:
                    continue
                if outcome.preview is None:
                    outcome.preview = frame.drop(columns=["metadata"]).head(5)
                if "updated_date" in frame:
                    batch_newest = frame["updated_date"].max()
                    if pd.notna(batch_newest) and (newest is None or batch_newest > newest):
                        newest = batch_newest.to_pydatetime()
                outcome.counts += warehouse.upsert_frame(conn, shape.table, frame)
            # Never past now: a future-dated record must not hide the records that arrive before it.
            candidates = [t for t in (previous, newest) if t is not None]
            outcome.watermark = min(max(candidates), now) if candidates else None
            _fill_run(run, outcome, client)
            sync_status.record_success(conn, run)
    except Exception as exc:
        outcome.watermark = previous
        _fill_run(run, outcome, client)
        run.error = f"{type(exc).__name__}: {exc}"[:4000]
        run.watermark = previous
        try:
            sync_status.record_failure(engine, run)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("klaviyo/%s: could not record the failure", request.entity)
        raise
    outcome.seconds = time.monotonic() - began
    return outcome


def _fill_run(run: sync_status.RunRecord, outcome: SyncOutcome, client: KlaviyoClient) -> None:
    """Counts for the run row; the client is this materialization's own, so its totals are the run's."""
    after = client.stats.totals()
    run.records_read = outcome.records_read
    run.records_rejected = len(outcome.rejected)
    run.rows_inserted = outcome.counts.inserted
    run.rows_updated = outcome.counts.updated
    run.rows_skipped = outcome.counts.skipped
    run.api_calls = after.calls
    run.retries = after.retries
    run.throttled = after.throttled
    run.throttled_seconds = after.throttled_seconds
    run.watermark = outcome.watermark
