"""Sync the members of every list or segment: extract, transform, load, without Dagster.

For each live list (or segment) of the warehouse, in turn:
- **incremental read** of its members (GET /api/lists/{id}/profiles, sorted by joined_group_at, a sparse
  fieldset of joined_group_at alone, 100 a page) from its own watermark less a lookback; with no watermark
  (the first run) or on `full_refresh`, a full read, which also counts as a full listing;
- **full listing** when its last one is older than `listing_every` (or on request): every member id from the
  ids-only route (GET .../relationships/profiles); members it no longer finds get `left_at`, members it finds
  that no read returned are inserted (join time unknown until one does), members back after leaving lose
  `left_at`.

Members stream: batches are transformed and upserted as they come (the guarded merge on joined_group_at, each
batch its own transaction), listed ids go batch by batch into a temporary table, so memory stays flat for a
segment of millions. A group's watermark moves only when its read is complete and loaded. Then Klaviyo's
`profile_count` of up to `profile_counts` groups (the stalest first: it is Klaviyo's XS tier, 15 a minute)
lands in the group's `member_count`. Members of groups found deleted leave them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pandas as pd

from assets.fetching import read_ahead
from assets.sync import fill_run, record_failed_run, start_run
from assets.transform import TRANSFORMS, Rejected
from resources.catalogue import CATALOGUE
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, Page
from resources.klaviyo_api import Cond, build_filter
from resources.warehouse import UpsertCounts, Warehouse
from resources.warehouse import members as mq
from resources.warehouse import status as sync_status
from resources.warehouse.listing import IdListing

UTC = dt.UTC
PROFILE_COUNT = "profile_count"


@dataclass(frozen=True)
class MembersRequest:
    entity: str  # list_members or segment_members
    full_refresh: bool = False  # read every member of every group again (ignores the watermarks)
    lookback: dt.timedelta = dt.timedelta(hours=1)
    listing_every: dt.timedelta | None = dt.timedelta(days=1)  # None: list only when asked
    full_listing: bool = False  # list every group now
    profile_counts: int = 15  # profile_count reads this run (Klaviyo's XS tier: 15 a minute)
    groups: tuple[str, ...] = ()  # only these lists or segments (default: every live one)
    run_id: str | None = None


@dataclass
class MembersOutcome:
    entity: str
    account_id: str
    groups: int = 0  # lists or segments read
    full_reads: int = 0  # of which read in full
    records_read: int = 0
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    rejected: list[Rejected] = field(default_factory=list)
    listings: int = 0  # full listings completed (full reads included)
    listed: int = 0  # member ids they found
    found: int = 0  # members a listing found that no read had returned
    back: int = 0  # members that had left and were listed again
    left: int = 0  # members marked left by listings
    left_with_group: int = 0  # members of groups found deleted
    member_counts: dict[str, int] = field(default_factory=dict)  # group -> profile_count read
    missing: list[str] = field(default_factory=list)  # groups Klaviyo no longer has (404)
    watermark: dt.datetime | None = None
    seconds: float = 0.0


def sync_members(
    request: MembersRequest,
    client: KlaviyoClient,
    warehouse: Warehouse,
    log: logging.Logger | None = None,
    now: dt.datetime | None = None,
) -> MembersOutcome:
    """Read, load and settle the members of every live list or segment (see the module's docstring)."""
    log = log or logging.getLogger(__name__)
    plan = CATALOGUE[request.entity]
    group_table = CATALOGUE[plan.member_of].table
    group_column = plan.key[1]
    transform = TRANSFORMS[request.entity]
    began = time.monotonic()
    started_at = dt.datetime.now(UTC)
    account_id = client.account_id()
    engine = warehouse.engine
    outcome = MembersOutcome(request.entity, account_id)
    previous = sync_status.watermark(engine, account_id, request.entity)
    run = start_run(engine, account_id, request, started_at)  # no window: one watermark per group
    newest_overall: list[dt.datetime | None] = [None]
    read_count = [0]  # members the last read returned

    def read(
        upserts, listing: IdListing | None, group_id: str, since: dt.datetime | None
    ) -> dt.datetime | None:
        """Stream one group's members (joined since `since`, or all) into the table, their ids into `listing`
        when given; the newest join time read."""
        params = {
            "fields[profile]": plan.cursor,
            "page[size]": str(plan.endpoint.page_size),
            "sort": plan.cursor,
        }
        if since is not None:
            params["filter"] = build_filter(plan.endpoint, [Cond("greater-or-equal", plan.cursor, since)])
        endpoint = plan.endpoint.under(group_id)
        # Fetched a page ahead, on a thread of its own, while this one transforms and loads the last.
        pages = read_ahead(lambda: client.iter_pages(endpoint, params, {"group_id": group_id}))
        newest = None
        read_count[0] = 0
        for records in _batches(pages, plan.batch_rows):
            outcome.records_read += len(records)
            read_count[0] += len(records)
            if listing is not None:
                listing.add(r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), str))
            result = transform(records, account_id, {"group_id": group_id})
            outcome.rejected += result.rejected
            for bad in result.rejected[:20]:
                log.warning(
                    "klaviyo/%s: rejected member %s of %s: %s", request.entity, bad.id, group_id, bad.reason
                )
            frame = result.frame
            if frame.empty:
                continue
            batch_newest = frame[plan.cursor].max()
            if pd.notna(batch_newest) and (newest is None or batch_newest > newest):
                newest = batch_newest.to_pydatetime()
            upserts.submit(frame)
        upserts.finish()  # the group's rows are committed before its watermark moves
        return newest

    def list_ids(listing: IdListing, group_id: str) -> None:
        """Every member id of the group, from the ids-only route, into `listing`."""
        endpoint = plan.id_listing.under(group_id)
        pages = read_ahead(
            lambda: client.iter_pages(endpoint, {"page[size]": str(plan.id_listing.page_size)})
        )
        for records in _batches(pages, plan.batch_rows):
            listing.add(r["id"] for r in records if isinstance(r, dict) and isinstance(r.get("id"), str))

    def settle(listing: IdListing, group_id: str, listed_at: dt.datetime) -> None:
        found, back, left = listing.settle_members(plan.table, group_column, account_id, group_id, listed_at)
        listed = listing.distinct()
        outcome.listings += 1
        outcome.listed += listed
        outcome.found += found
        outcome.back += back
        outcome.left += left
        with warehouse.transaction() as conn:
            mq.save_listing(conn, account_id, request.entity, group_id, listed_at, listed)
        if found or left:
            log.info(
                "klaviyo/%s: %s lists %d members: %d not read before, %d back, %d left",
                request.entity, group_id, listed, found, back, left,
            )  # fmt: skip

    def one_group(upserts, listing: IdListing, group: mq.GroupState) -> None:
        """A full read (never read yet, or full_refresh: it lists the members too), or a full listing when one
        is due and then an incremental read; the group's watermark moves when its rows are in."""
        began_at = dt.datetime.now(UTC)
        full = request.full_refresh or group.last_read_at is None
        due = request.full_listing or (
            request.listing_every is not None
            and (
                group.last_listed_at is None
                or (now or began_at) - group.last_listed_at >= request.listing_every
            )
        )
        listing.reset()
        if full:
            with warehouse.engine.connect() as conn:
                known = mq.has_members(conn, plan.table, group_column, account_id, group.group_id)
            # A full read lists the members too; with no row of the group stored yet there is nothing it
            # could find gone, so its ids need not be kept.
            newest = read(upserts, listing if known else None, group.group_id, None)
            if known:
                settle(listing, group.group_id, began_at)
            else:
                with warehouse.transaction() as conn:
                    mq.save_listing(conn, account_id, request.entity, group.group_id, began_at, read_count[0])
                outcome.listings += 1
                outcome.listed += read_count[0]
            outcome.full_reads += 1
        else:
            if due:
                list_ids(listing, group.group_id)
                settle(listing, group.group_id, began_at)
            # From the watermark less the lookback (a group with no member yet: all of them).
            since = group.watermark - request.lookback if group.watermark is not None else None
            bounds = client.live_bounds(since, None)
            newest = read(upserts, None, group.group_id, bounds[0]) if bounds else None
        outcome.groups += 1
        if newest is not None:
            # Never past now: a join time ahead of the clock must not hide the members who join before it.
            newest = min(newest, now or began_at)
            if newest_overall[0] is None or newest > newest_overall[0]:
                newest_overall[0] = newest
        with warehouse.transaction() as conn:
            mq.save_read(conn, account_id, request.entity, group.group_id, newest, began_at)

    try:
        with engine.connect() as conn:
            groups = mq.live_groups(conn, request.entity, group_table, account_id)
        if request.groups:
            wanted = set(request.groups)
            groups = [g for g in groups if g.group_id in wanted]
        upserts = warehouse.pipelined_upserts(plan.table, plan.key, plan.guard)
        try:
            with IdListing(warehouse) as listing, upserts:
                for group in groups:
                    try:
                        one_group(upserts, listing, group)
                    except KlaviyoApiError as exc:
                        if exc.status != 404:
                            raise
                        # Deleted at Klaviyo since the groups were synced (the reconciliation will mark it).
                        outcome.missing.append(group.group_id)
                        log.warning("klaviyo/%s: %s is gone at Klaviyo (404)", request.entity, group.group_id)
        finally:
            outcome.counts += upserts.counts  # what was merged, even when a later batch failed

        # Klaviyo's own counts, stalest first, as many as this run may spend of the XS tier.
        stalest = sorted(
            (g for g in groups if g.group_id not in outcome.missing),
            key=lambda g: (g.member_count_at is not None, g.member_count_at or started_at, g.group_id),
        )
        for group in stalest[: request.profile_counts]:
            try:
                resource = client.get_resource(plan.member_of, group.group_id, [PROFILE_COUNT])
            except KlaviyoApiError as exc:
                if exc.status != 404:
                    raise
                outcome.missing.append(group.group_id)
                continue
            count = (resource.get("attributes") or {}).get(PROFILE_COUNT)
            if isinstance(count, int) and not isinstance(count, bool):
                with warehouse.transaction() as conn:
                    mq.save_member_count(
                        conn, group_table, account_id, group.group_id, count, dt.datetime.now(UTC)
                    )
                outcome.member_counts[group.group_id] = count

        with warehouse.transaction() as conn:
            outcome.left_with_group = mq.leave_deleted_groups(
                conn, plan.table, group_column, group_table, account_id
            )
            candidates = [t for t in (previous, newest_overall[0]) if t is not None]
            outcome.watermark = max(candidates) if candidates else None
            fill_run(run, outcome, client)
            sync_status.record_success(conn, run)
    except Exception as exc:
        record_failed_run(engine, run, outcome, client, previous, exc, log)
        raise
    outcome.seconds = time.monotonic() - began
    return outcome


def _batches(pages: Iterator[Page], size: int) -> Iterator[list[dict]]:
    """Pages regrouped into batches of about `size` records."""
    batch: list[dict] = []
    for page in pages:
        batch.extend(page.records)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
