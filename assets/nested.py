"""Nested entities: what Klaviyo lists only under one record of another, read under each record that changed.

klaviyo_flow_messages (GET /api/flow-actions/{id}/flow-messages) and klaviyo_form_versions
(GET /api/forms/{id}/form-versions) are their own assets, klaviyo/flow_messages downstream of klaviyo/flows and
klaviyo/form_versions downstream of klaviyo/forms; a flow's steps (klaviyo_flow_actions) are not. Why:

- Requests are what these cost. Every endpoint involved is in the S tier (3/s, 60/m, Klaviyo's spec, revision
  2026-07-15), and the flows and forms listings share it.
- Steps come with their flows for nothing. GET /api/flows accepts `include=flow-actions`, and its compound
  document carries the whole flow-action resource (definition included: type, status, settings, next step).
  The flows asset already lists exactly the flows whose `updated` moved in its window, so asking for their steps
  there adds no request at all, where GET /api/flows/{id}/flow-actions would add one per changed flow (400 a full
  sync of a large account: near 7 minutes of the S tier). They land in klaviyo_flow_actions in the flows'
  transaction, like campaign messages with campaigns; a step a re-read flow no longer lists is soft-deleted.
- Messages and form versions cannot come that way: no listing includes them (the step and form listings take no
  `include`; GET /api/flow-actions/{id}?include=flow-messages is a request per step as well). So they cost one
  request per step that sends a message, and one per form. Inside the flows or forms asset those requests would
  hold the parent's transaction and run for minutes and fail it with them. As assets of their own they read
  under the records the parent's own run just changed (the parent's rows whose cursor lies in the run's window),
  retry on their own, and carry their own freshness, checks and materializations.

A nested entity's window is its parent's: a run reads under the parent rows (a step: of a flow) whose cursor lies
in the window, from the nested entity's own watermark (the newest parent cursor it has read under) minus the
lookback when the partition is live; `full_refresh` ignores the watermark, so a run over every partition is a
full pass, as is the deletion reconciliation's. Each parent's listing is read whole (Klaviyo's `updated` filters
there would hide what was removed): rows it no longer lists get `deleted_at`, and so does what hangs off them.
Under a parent without a timestamp (a snapshot: coupons, catalog categories) nothing says which records changed,
so a run reads under every live one, and the nested entity is unpartitioned like its parent: a coupon's codes
(klaviyo_coupon_codes), a category's items (klaviyo_catalog_item_categories, an ids-only `/relationships/` route
whose rows are links keyed by both ids).

Reading a batch of parents happens outside any transaction; each batch is then written in one short one, and the
status row moves only when every batch is in (a failure is repaired by the rerun: the writes are guarded).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

import pandas as pd

from assets.dependents import cascade_deleted
from assets.sync import (
    SyncOutcome,
    SyncRequest,
    add_removed,
    fill_run,
    read_window,
    record_failed_run,
    start_run,
)
from assets.transform import TRANSFORMS
from resources.catalogue import CATALOGUE
from resources.klaviyo import KlaviyoApiError, KlaviyoClient
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse import status as sync_status

UTC = dt.UTC
PARENTS_PER_BATCH = 50  # parent listings read before a batch is written


def sync_nested(
    request: SyncRequest,
    client: KlaviyoClient,
    warehouse: Warehouse,
    log: logging.Logger | None = None,
    now: dt.datetime | None = None,
) -> SyncOutcome:
    """Read a nested entity under each parent row that changed in the request's window and load it: guarded
    upserts, soft deletes of what a parent no longer lists, the status and run rows."""
    log = log or logging.getLogger(__name__)
    plan = CATALOGUE[request.entity]
    parent = plan.parent
    if parent is None:
        raise ValueError(f"{request.entity} is not a nested entity")
    root = CATALOGUE[parent.entity]
    transform = TRANSFORMS[request.entity]
    listed_key = [c for c in plan.key if c != "account_id"]
    began = time.monotonic()
    started_at = dt.datetime.now(UTC)
    now = now or started_at
    account_id = client.account_id()
    engine = warehouse.engine
    previous = sync_status.watermark(engine, account_id, request.entity)
    # Under a root without a timestamp (a snapshot: coupons, catalog categories), every live record, each run.
    read_start, read_end = read_window(request, previous, now) if root.cursor else (None, None)
    outcome = SyncOutcome(request.entity, account_id, read_start, read_end)
    run = start_run(engine, account_id, request, started_at, (read_start, read_end))
    newest: dt.datetime | None = None
    try:
        with engine.connect() as conn:
            parents = q.changed_parents(
                conn, account_id, root.table, root.cursor_column if root.cursor else None,
                read_start, read_end, table=parent.table, via=parent.via, only=parent.only,
            )  # fmt: skip
        for first in range(0, len(parents), PARENTS_PER_BATCH):
            frames, listed, read_under = [], [], []
            for row in parents[first : first + PARENTS_PER_BATCH]:
                try:
                    records = [r for page in client.list_under(request.entity, row.id) for r in page.records]
                except KlaviyoApiError as exc:
                    if exc.status != 404:
                        raise
                    # Gone since its parent was read: the parent's next read (or the reconciliation) removes it.
                    outcome.parents_gone.append(row.id)
                    log.warning("klaviyo/%s: %s %s is gone (404)", request.entity, parent.table, row.id)
                    continue
                read_under.append(row.id)
                if row.root_stamp is not None and (newest is None or row.root_stamp > newest):
                    newest = row.root_stamp
                outcome.records_read += len(records)
                result = transform(records, account_id, {"_parent": row.id, "_root": row.root_id})
                outcome.rejected += result.rejected
                for bad in result.rejected[:20]:
                    log.warning("klaviyo/%s: rejected record %s: %s", request.entity, bad.id, bad.reason)
                if not result.frame.empty:
                    frames.append(result.frame)
                # Every id listed counts as present, a record the transform rejected too; as the key less the
                # account (a link's key also names the record read under).
                listed += [
                    tuple(row.id if c == parent.column else r["id"] for c in listed_key)
                    for r in records
                    if isinstance(r, dict) and isinstance(r.get("id"), str)
                ]
            outcome.parents_read += len(read_under)
            frame = pd.concat(frames, ignore_index=True) if frames else None
            if outcome.preview is None and frame is not None:
                outcome.preview = frame[
                    [c for c in frame.columns if frame[c].dtype != object or c in ("id", "name")]
                ].head(5)
            with warehouse.transaction() as conn:
                if frame is not None:
                    outcome.counts += warehouse.upsert_frame(
                        conn, plan.table, frame, key=plan.key, guard=plan.guard
                    )
                gone = q.mark_unlisted_owned_deleted(
                    conn, plan.table, parent.column, plan.key, account_id, read_under, listed,
                    listed_since=started_at,
                )  # fmt: skip
                # Ids of the rows marked (a link has none: its key, joined, names it; nothing hangs off it).
                ids = [k[listed_key.index("id")] for k in gone] if "id" in listed_key else []
                outcome.marked_deleted += ids if "id" in listed_key else [" ".join(k) for k in gone]
                add_removed(outcome, {plan.table: len(gone)})
                add_removed(outcome, cascade_deleted(conn, plan.table, account_id, ids))
        with warehouse.transaction() as conn:
            # The newest parent cursor read under, never past now (as an entity's own watermark).
            candidates = [t for t in (previous, newest) if t is not None]
            outcome.watermark = min(max(candidates), now) if candidates else None
            fill_run(run, outcome, client)
            sync_status.record_success(conn, run)
    except Exception as exc:
        record_failed_run(engine, run, outcome, client, previous, exc, log)
        raise
    outcome.seconds = time.monotonic() - began
    return outcome
