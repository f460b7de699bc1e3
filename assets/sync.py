"""Sync one entity for one window: extract with the client, transform, load with the guarded upsert.

Entities commit the data, the status row and the run row in one transaction: a failure leaves the warehouse
and the watermark exactly as they were. The volume streams (profiles, events) commit batch by batch, so no
stage ever holds a whole window; their upserts are idempotent and the watermark moves only when the window
is complete, so a failure loses nothing and a rerun duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from assets.fetching import concurrent_pages, split_window
from assets.transform import INCLUDED_SHAPES, TRANSFORMS, Rejected, transform_included
from resources.catalogue import CATALOGUE
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, Page
from resources.klaviyo_api import Cond, FilterNotAllowed
from resources.warehouse import UpsertCounts, Warehouse
from resources.warehouse import status as sync_status

UTC = dt.UTC


@dataclass(frozen=True)
class SyncRequest:
    entity: str
    window_start: dt.datetime | None  # None: from the beginning (unpartitioned snapshots)
    window_end: dt.datetime | None
    full_refresh: bool = False
    lookback: dt.timedelta = dt.timedelta(hours=1)
    run_id: str | None = None
    partition_key: str | None = None
    filter_passes: tuple[tuple[Cond, ...], ...] = ((),)  # e.g. one pass per chosen metric
    additional_fields: tuple[str, ...] = ()
    # A live partition's incremental run also re-reads this far back from now (records Klaviyo received late
    # with an older timestamp, e.g. imported events); None: only the watermark's lookback.
    reread: dt.timedelta | None = None


class MetricRefused(FilterNotAllowed):
    """Klaviyo refused the events filter of one or more metric ids (e.g. a custom metric's); the other
    metrics were loaded."""


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
    seconds: float = 0.0
    preview: pd.DataFrame | None = None
    included: dict[str, UpsertCounts] = field(default_factory=dict)  # by table, e.g. campaign messages


def read_window(request: SyncRequest, previous_watermark: dt.datetime | None, now: dt.datetime) -> tuple:
    """The window actually read: the partition's; but when the partition is live (it holds `now`) and the run
    is incremental, from the watermark minus the lookback, which may reach back before the partition (a
    trailing re-read, or catching up after missed runs)."""
    start, end = request.window_start, request.window_end
    live = end is None or end > now
    if live and not request.full_refresh and previous_watermark is not None:
        start = previous_watermark - request.lookback
    if live and request.reread is not None and start is not None:
        start = min(start, now - request.reread)
    return start, end


def _batches(pages: Iterator[Page], size: int) -> Iterator[tuple[list[dict], dict, list[dict]]]:
    """Pages regrouped into batches of about `size` records that share a pass context, each with the resources
    Klaviyo included beside its pages."""
    batch: list[dict] = []
    included: dict[tuple[str, str], dict] = {}
    context: dict = {}
    for page in pages:
        if batch and page.context != context:
            yield batch, context, list(included.values())
            batch, included = [], {}
        context = page.context
        batch.extend(page.records)
        included.update(page.included)
        if len(batch) >= size:
            yield batch, context, list(included.values())
            batch, included = [], {}
    if batch:
        yield batch, context, list(included.values())


def sync_entity(
    request: SyncRequest,
    client: KlaviyoClient,
    warehouse: Warehouse,
    log: logging.Logger | None = None,
    now: dt.datetime | None = None,
) -> SyncOutcome:
    log = log or logging.getLogger(__name__)
    plan = CATALOGUE[request.entity]
    transform = TRANSFORMS[request.entity]
    began = time.monotonic()
    started_at = dt.datetime.now(UTC)
    now = now or started_at
    account_id = client.account_id()
    engine = warehouse.engine
    previous = sync_status.watermark(engine, account_id, request.entity)
    read_start, read_end = read_window(request, previous, now)
    outcome = SyncOutcome(request.entity, account_id, read_start, read_end)
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
    newest: list[dt.datetime | None] = [None]
    refused: list[tuple[str, str]] = []  # (metric id, Klaviyo's detail)

    def listing(conditions, start, end) -> Callable[[], Iterator[Page]]:
        return lambda: client.list_window(
            request.entity,
            start,
            end,
            filters=conditions,
            include=plan.include,
            additional_fields=request.additional_fields,
        )

    def refusable(conditions, source: Callable[[], Iterator[Page]]) -> Callable[[], Iterator[Page]]:
        """A metric pass whose metric id Klaviyo refuses (400) is noted and skipped; the others go on."""
        metric = next((c.value for c in conditions if c.field == "metric_id"), None)
        if metric is None:
            return source

        def run() -> Iterator[Page]:
            try:
                yield from source()
            except KlaviyoApiError as exc:
                if exc.status != 400:
                    raise
                refused.append((metric, exc.detail))
                log.error("klaviyo/%s: Klaviyo refused metric %s: %s", request.entity, metric, exc.detail)

        return run

    def pages() -> Iterator[Page]:
        closed = (
            read_start is not None
            and read_end is not None
            and client.live_bounds(read_start, read_end)
            == (
                read_start,
                read_end,
            )
        )
        pieces = (
            split_window(read_start, read_end, 4 * plan.fetch_workers) if closed else [(read_start, read_end)]
        )
        sources = [refusable(c, listing(c, a, b)) for c in request.filter_passes for a, b in pieces]
        return concurrent_pages(sources, plan.fetch_workers)

    def prepare(records: list[dict], context: dict) -> pd.DataFrame | None:
        """Transform a batch (on the caller's thread) and note what it says about the watermark."""
        outcome.records_read += len(records)
        result = transform(records, account_id, context)
        outcome.rejected += result.rejected
        for bad in result.rejected[:20]:
            log.warning("klaviyo/%s: rejected record %s: %s", request.entity, bad.id, bad.reason)
        frame = result.frame
        unasked = [c for c in plan.opt_in_columns if c in frame and c not in request.additional_fields]
        if unasked:
            frame = frame.drop(columns=unasked)
        if frame.empty:
            return None
        if outcome.preview is None:
            outcome.preview = frame[
                [c for c in frame.columns if frame[c].dtype != object or c in ("id", "name")]
            ].head(5)
        if plan.cursor_column in frame:
            batch_newest = frame[plan.cursor_column].max()
            if pd.notna(batch_newest) and (newest[0] is None or batch_newest > newest[0]):
                newest[0] = batch_newest.to_pydatetime()
        return frame

    def load_included(conn, resource_type: str, records: list[dict], included: list[dict]) -> None:
        """Resources Klaviyo returned beside the batch (e.g. campaign messages) into their own table."""
        result = transform_included(resource_type, records, included, account_id)
        for bad in result.rejected[:20]:
            log.warning("klaviyo/%s: rejected %s %s: %s", request.entity, resource_type, bad.id, bad.reason)
        outcome.rejected += [Rejected(bad.id, f"{resource_type}: {bad.reason}") for bad in result.rejected]
        frame = result.frame
        if frame.empty:
            return
        table = INCLUDED_SHAPES[resource_type].table
        counts = warehouse.upsert_frame(conn, table, frame)
        outcome.included[table] = outcome.included.get(table, UpsertCounts()) + counts

    def finish(conn) -> None:
        # Never past now: a future-dated record must not hide the records that arrive before it.
        candidates = [t for t in (previous, newest[0]) if t is not None]
        outcome.watermark = min(max(candidates), now) if candidates else None
        _fill_run(run, outcome, client)
        sync_status.record_success(conn, run)

    try:
        if plan.streaming:
            # Each batch commits on its own; Postgres loads one while the next is transformed and formatted.
            upserts = warehouse.pipelined_upserts(plan.table, plan.key, plan.guard, plan.month_partitions_on)
            try:
                with upserts:
                    for records, context, _ in _batches(pages(), plan.batch_rows):
                        frame = prepare(records, context)
                        if frame is not None:
                            upserts.submit(frame)
            finally:
                outcome.counts += upserts.counts  # what was merged, even when a later batch failed
            if refused:
                raise MetricRefused(_refusals(request.entity, refused))
            with warehouse.transaction() as conn:
                finish(conn)
        else:
            with warehouse.transaction() as conn:
                for records, context, included in _batches(pages(), plan.batch_rows):
                    frame = prepare(records, context)
                    if frame is not None:
                        outcome.counts += warehouse.upsert_frame(
                            conn, plan.table, frame, key=plan.key, guard=plan.guard
                        )
                    for resource_type in plan.included_tables:
                        load_included(conn, resource_type, records, included)
                if refused:
                    raise MetricRefused(_refusals(request.entity, refused))
                finish(conn)
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


def _refusals(entity: str, refused: list[tuple[str, str]]) -> str:
    metrics = ", ".join(dict.fromkeys(m for m, _ in refused))
    return (
        f"klaviyo/{entity}: Klaviyo refused the metric_id filter for {metrics} ({refused[0][1]}); the other "
        "metrics were loaded. Custom metrics cannot filter events: name only metrics from klaviyo_metrics."
    )


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
