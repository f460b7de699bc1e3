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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from assets.dependents import cascade_deleted
from assets.fetching import concurrent_pages, split_window
from assets.transform import (
    DERIVED_TABLES,
    INCLUDED_SHAPES,
    TRANSFORMS,
    Rejected,
    relationship_of,
    transform_derived,
    transform_included,
)
from resources.catalogue import CATALOGUE
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, Page
from resources.klaviyo_api import Cond, FilterNotAllowed
from resources.warehouse import UpsertCounts, Warehouse
from resources.warehouse import queries as q
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
    # Rows soft-deleted by the run, by table: included resources a record read no longer lists (a removed flow
    # step), derived rows it no longer holds, nested records no longer listed, and what hung off them.
    removed: dict[str, int] = field(default_factory=dict)
    marked_deleted: list[str] = field(default_factory=list)  # ids of the entity's own rows soft-deleted
    parents_read: int = 0  # a nested entity: the records it was read under
    parents_gone: list[str] = field(default_factory=list)  # ... and those Klaviyo answered 404 for


def add_removed(outcome: SyncOutcome, counts: dict[str, int]) -> None:
    for table, n in counts.items():
        if n:
            outcome.removed[table] = outcome.removed.get(table, 0) + n


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
    run = start_run(engine, account_id, request, started_at, (read_start, read_end))
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

    def current_versions(conn, frame: pd.DataFrame | None) -> dict[str, dt.datetime | None]:
        """The batch's records whose row now holds the version read (written or confirmed, not an older copy the
        guard refused), with that version: only their included and derived rows are replaced."""
        if frame is None or frame.empty:
            return {}
        if not plan.guard:
            return dict.fromkeys(frame["id"])
        versions = {
            rid: None if pd.isna(v) else pd.Timestamp(v).to_pydatetime()
            for rid, v in zip(frame["id"], frame[plan.guard], strict=True)
        }
        at_version = q.rows_at_version(conn, plan.table, plan.guard, account_id, versions)
        return {rid: v for rid, v in versions.items() if rid in at_version}

    def load_included(
        conn, resource_type: str, records: list[dict], included: list[dict], current: dict
    ) -> None:
        """Resources Klaviyo returned beside the batch (e.g. campaign messages, flow steps) into their own table;
        those a record now current no longer lists (its relationship's data) are soft-deleted."""
        result = transform_included(resource_type, records, included, account_id)
        for bad in result.rejected[:20]:
            log.warning("klaviyo/%s: rejected %s %s: %s", request.entity, resource_type, bad.id, bad.reason)
        outcome.rejected += [Rejected(bad.id, f"{resource_type}: {bad.reason}") for bad in result.rejected]
        shape = INCLUDED_SHAPES[resource_type]
        frame = result.frame
        if not frame.empty:
            counts = warehouse.upsert_frame(conn, shape.table, frame)
            outcome.included[shape.table] = outcome.included.get(shape.table, UpsertCounts()) + counts
        listed = listed_included(records, resource_type, current)
        gone = q.mark_unlisted_owned_deleted(
            conn, shape.table, shape.owner_column, ("account_id", "id"), account_id, list(listed),
            [(i,) for ids in listed.values() for i in ids], listed_since=started_at,
        )  # fmt: skip
        add_removed(outcome, {shape.table: len(gone)})
        add_removed(outcome, cascade_deleted(conn, shape.table, account_id, [k[0] for k in gone]))

    def load_derived(conn, name: str, records: list[dict], current: dict) -> None:
        """Rows the batch's current records hold in their own attributes (a campaign's audiences): written, and
        those a record no longer holds soft-deleted."""
        derived = DERIVED_TABLES[name]
        frame = transform_derived(name, records, current, account_id)
        if not frame.empty:
            counts = warehouse.upsert_frame(conn, derived.table, frame, key=derived.key, guard=None)
            outcome.included[derived.table] = outcome.included.get(derived.table, UpsertCounts()) + counts
        kept = [k for k in derived.key if k != "account_id"]
        gone = q.mark_unlisted_owned_deleted(
            conn, derived.table, derived.owner_column, derived.key, account_id, list(current),
            list(frame[kept].itertuples(index=False, name=None)),
        )  # fmt: skip
        add_removed(outcome, {derived.table: len(gone)})

    def finish(conn) -> None:
        # Never past now: a future-dated record must not hide the records that arrive before it.
        candidates = [t for t in (previous, newest[0]) if t is not None]
        outcome.watermark = min(max(candidates), now) if candidates else None
        fill_run(run, outcome, client)
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
                    current = (
                        current_versions(conn, frame) if plan.included_tables or plan.derived_tables else {}
                    )
                    for resource_type in plan.included_tables:
                        load_included(conn, resource_type, records, included, current)
                    for name in plan.derived_tables:
                        load_derived(conn, name, records, current)
                if refused:
                    raise MetricRefused(_refusals(request.entity, refused))
                finish(conn)
    except Exception as exc:
        record_failed_run(engine, run, outcome, client, previous, exc, log)
        raise
    outcome.seconds = time.monotonic() - began
    return outcome


def listed_included(records: list[dict], resource_type: str, owners: Iterable[str]) -> dict[str, list[str]]:
    """For each of these records that gives its relationship's data (always, when it was asked for with
    `include=`), the ids of the resources of `resource_type` it lists: all it has at Klaviyo."""
    wanted = set(owners)
    out: dict[str, list[str]] = {}
    for record in records:
        rid = record.get("id") if isinstance(record, dict) else None
        if rid not in wanted:
            continue
        rel = (record.get("relationships") or {}).get(relationship_of(resource_type))
        data = rel.get("data") if isinstance(rel, dict) else None
        if isinstance(data, list):
            out[rid] = [d["id"] for d in data if isinstance(d, dict) and isinstance(d.get("id"), str)]
    return out


def _refusals(entity: str, refused: list[tuple[str, str]]) -> str:
    metrics = ", ".join(dict.fromkeys(m for m, _ in refused))
    return (
        f"klaviyo/{entity}: Klaviyo refused the metric_id filter for {metrics} ({refused[0][1]}); the other "
        "metrics were loaded. Custom metrics cannot filter events: name only metrics from klaviyo_metrics."
    )


def start_run(
    engine, account_id: str, request, started_at: dt.datetime, window: tuple = (None, None)
) -> sync_status.RunRecord:
    """The run row of a sync about to start (`request`: its entity, run id, partition key, full refresh), and
    the entity marked running."""
    run = sync_status.RunRecord(
        account_id=account_id,
        entity=request.entity,
        run_id=request.run_id,
        partition_key=getattr(request, "partition_key", None),
        window_start=window[0],
        window_end=window[1],
        full_refresh=request.full_refresh,
        started_at=started_at,
    )
    sync_status.mark_started(engine, account_id, request.entity, request.run_id)
    return run


def fill_run(run: sync_status.RunRecord, outcome, client: KlaviyoClient) -> None:
    """Counts for the run row (of an entity's, a nested entity's or members' outcome); the client is this
    materialization's own, so its totals are the run's."""
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


def record_failed_run(
    engine, run: sync_status.RunRecord, outcome, client: KlaviyoClient, previous, exc: BaseException, log
) -> None:
    """A sync failed: its outcome and run row keep the watermark where it was, and the failure is recorded
    (a failure to record it is logged, never raised over the sync's own error)."""
    outcome.watermark = previous
    fill_run(run, outcome, client)
    run.error = f"{type(exc).__name__}: {exc}"[:4000]
    run.watermark = previous
    try:
        sync_status.record_failure(engine, run)
    except Exception:  # noqa: BLE001 - the original error matters more
        log.exception("klaviyo/%s: could not record the failure", run.entity)
