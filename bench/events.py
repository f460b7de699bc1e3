"""Events (1,000,000), profiles (500,000) and the members of a segment (1,000,000) from the simulator into
Postgres, all figures from one run (`python bench/events.py members` runs one part):

(a) end-to-end rows/s into the table against the rate a bare requests loop merely fetches the same pages;
(b) the transform + load stage alone on already-fetched pages against a plain COPY of the same rows;
(c) peak RSS of the end-to-end run, and its growth between a quarter of the rows and all of them.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time

import psutil
import requests
from _common import (
    BENCH_KEY,
    HEADERS,
    PeakRSS,
    copy_frame,
    mb,
    scratch_warehouse,
    simulator_process,
    unlimited_budget,
)
from sqlalchemy import text

EVENTS = int(os.environ.get("BENCH_EVENTS", "1000000"))
PROFILES = int(os.environ.get("BENCH_PROFILES", "500000"))
MEMBERS = int(os.environ.get("BENCH_MEMBERS", "1000000"))  # in one segment
STAGE_ROWS = 100_000  # rows pre-fetched for (b)
STAGE_ROUNDS = 3  # (b) is the median of this many rounds of the stage and of its COPY baseline


def bare_fetch(url: str, path: str, size: int) -> tuple[int, float]:
    """Records of a listing fetched by a bare requests loop, and the seconds it took (`path` may end in `?` or
    `&` to carry a query of its own)."""
    session = requests.Session()
    n, next_url = 0, f"{url}{path}{'' if path.endswith(('?', '&')) else '?'}page[size]={size}"
    began = time.perf_counter()
    while next_url:
        body = session.get(next_url, headers=HEADERS, timeout=60).json()
        n += len(body["data"])
        next_url = body["links"]["next"]
    return n, time.perf_counter() - began


def measure(entity: str, total: int, sim_args: list[str]) -> None:
    import datetime as dt

    history_start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(
        days=121
    )
    from assets.sync import SyncRequest, sync_entity
    from assets.transform import TRANSFORMS
    from resources.catalogue import CATALOGUE, ENDPOINTS
    from resources.klaviyo import KlaviyoClient

    plan = CATALOGUE[entity]
    endpoint = ENDPOINTS[entity]
    me = psutil.Process(os.getpid())
    wh = scratch_warehouse(f"bench_{entity}")
    with simulator_process("--no-rate-limits", *sim_args) as (url, _proc):
        n_bare, bare_s = bare_fetch(url, endpoint.path, endpoint.page_size)

        # (a) + (c): the real sync path, streaming batch by batch.
        gc.collect()
        baseline = me.memory_info().rss
        marks: dict[str, int] = {}

        class MarkingClient(KlaviyoClient):
            """Notes this process's RSS when a quarter, and all, of the rows have streamed through."""

            def iter_pages(self, *args, **kwargs):
                seen = 0
                for page in super().iter_pages(*args, **kwargs):
                    yield page
                    seen += page.received
                    for label, at in (("25%", total // 4), ("100%", total)):
                        if label not in marks and seen >= at:
                            marks[label] = me.memory_info().rss

        # The simulator's limits are off; so is the client's budget, or Klaviyo's L tier (700 requests/min) would
        # cap profiles at ~1,170 rows/s and the figure would measure the quota, not the pipeline.
        client = MarkingClient(BENCH_KEY, base_url=url, budget=unlimited_budget())
        began = time.perf_counter()
        with PeakRSS(me) as peak:
            # A backfill from the account's first day through today, as a range run would ask for it.
            outcome = sync_entity(SyncRequest(entity, history_start, None), client, wh)
        e2e_s = time.perf_counter() - began
        with wh.engine.connect() as conn:
            rows = conn.execute(text(f"SELECT count(*) FROM {plan.table}")).scalar_one()

        # (b): transform + load on pages already in memory, against a plain COPY of the same rows.
        pages = []
        fetched = 0
        for page in KlaviyoClient(BENCH_KEY, base_url=url, budget=unlimited_budget()).list_window(entity):
            pages.append(page.records)
            fetched += len(page.records)
            if fetched >= STAGE_ROWS:
                break
    with wh.engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE plain_{entity} (LIKE {plan.table} INCLUDING DEFAULTS)"))
    batches = [
        sum(pages[k : k + plan.batch_rows // len(pages[0])], [])
        for k in range(0, len(pages), plan.batch_rows // len(pages[0]))
    ]
    # The pre-fetched pages are millions of live objects that the real, streaming path never holds; keep the
    # garbage collector from re-scanning them during both measurements (the stage's and the COPY's).
    gc.collect()
    gc.freeze()
    rounds = []
    for _ in range(STAGE_ROUNDS):
        with wh.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {plan.table}, plain_{entity}"))
        began = time.perf_counter()
        frames = []
        # The stage as sync_entity runs it: transform here while the previous batch is loaded.
        with wh.pipelined_upserts(plan.table, plan.key, plan.guard, plan.month_partitions_on) as upserts:
            for records in batches:
                frame = TRANSFORMS[entity](records, "bench", {}).frame
                upserts.submit(frame)
                frames.append(frame)
        stage_s = time.perf_counter() - began
        began = time.perf_counter()
        for frame in frames:
            with wh.transaction() as conn:
                copy_frame(wh, conn, f"plain_{entity}", frame)
        rounds.append((stage_s, time.perf_counter() - began))
    stage_s = statistics.median(r[0] for r in rounds)
    copy_s = statistics.median(r[1] for r in rounds)
    gc.unfreeze()

    assert n_bare == rows == outcome.records_read == total, (n_bare, rows, outcome.records_read, total)
    bare_rate, e2e_rate = total / bare_s, total / e2e_s
    print(
        f"== {entity}: {total:,} rows, page size {endpoint.page_size}, simulator in its own process, limits off"
    )
    print(
        f"(a) bare requests fetch: {bare_rate:>9,.0f} rows/s; end to end into {plan.table}: {e2e_rate:>9,.0f} rows/s "
        f"= {e2e_rate / bare_rate:.2f}x (target >= 0.7x)"
    )
    print(
        f"(b) transform + load of {fetched:,} fetched rows: {fetched / stage_s:>9,.0f} rows/s; plain COPY of the same rows: "
        f"{fetched / copy_s:>9,.0f} rows/s = {copy_s / stage_s:.2f}x (target >= 0.4x; median of {STAGE_ROUNDS}: "
        f"{', '.join(f'{cp / st:.2f}x' for st, cp in rounds)})"
    )
    print(
        f"(c) peak RSS {mb(peak.peak)} ({mb(peak.peak - baseline)} above the start; target < 300 MB); "
        f"at 25%: {mb(marks.get('25%', 0))}, at 100%: {mb(marks.get('100%', 0))}"
    )


def measure_members(total: int) -> None:
    """A segment of `total` members (the simulator's first segment holds every profile) through the members
    sync, against a bare requests loop fetching the same pages, in the same run; peak RSS of the sync."""
    from assets.member_sync import MembersRequest, sync_members
    from assets.sync import SyncRequest, sync_entity
    from resources.catalogue import CATALOGUE
    from resources.klaviyo import KlaviyoClient

    plan = CATALOGUE["segment_members"]
    me = psutil.Process(os.getpid())
    wh = scratch_warehouse("bench_segment_members")
    with simulator_process("--no-rate-limits", "--profiles", str(total), "--events", "1000") as (url, _proc):
        client = KlaviyoClient(BENCH_KEY, base_url=url, budget=unlimited_budget())
        sync_entity(SyncRequest("segments", None, None, full_refresh=True), client, wh)  # what to read under
        with wh.engine.connect() as conn:
            ids = conn.execute(text("SELECT id FROM klaviyo_segments")).scalars().all()
        counts = {
            i: client.get_resource("segments", i, ["profile_count"])["attributes"]["profile_count"]
            for i in ids
        }
        segment = max(counts, key=counts.get)
        assert counts[segment] == total, counts
        # The pages the sync reads: 100 members a page, the join time alone, in joined_group_at order.
        path = f"/api/segments/{segment}/profiles?fields%5Bprofile%5D=joined_group_at&sort=joined_group_at"
        n_bare, bare_s = bare_fetch(url, path + "&", plan.endpoint.page_size)

        gc.collect()
        baseline = me.memory_info().rss
        marks: dict[str, int] = {}

        class MarkingClient(KlaviyoClient):
            """Notes this process's RSS when a quarter, and all, of the members have streamed through."""

            def iter_pages(self, *args, **kwargs):
                seen = 0
                for page in super().iter_pages(*args, **kwargs):
                    yield page
                    seen += page.received
                    for label, at in (("25%", total // 4), ("100%", total)):
                        if label not in marks and seen >= at:
                            marks[label] = me.memory_info().rss

        client = MarkingClient(BENCH_KEY, base_url=url, budget=unlimited_budget())
        request = MembersRequest("segment_members", groups=(segment,), profile_counts=0)
        began = time.perf_counter()
        with PeakRSS(me) as peak:
            # A first read: every member, streamed in batches; it counts as a full listing too (settled in SQL).
            outcome = sync_members(request, client, wh)
        e2e_s = time.perf_counter() - began
        # A full listing of the ids alone (the relationships route), as the daily removal check reads them.
        ids_path = f"/api/segments/{segment}/relationships/profiles?"
        n_ids, ids_bare_s = bare_fetch(url, ids_path, plan.id_listing.page_size)
        began = time.perf_counter()
        with PeakRSS(me) as listing_peak:
            listed = sync_members(
                MembersRequest("segment_members", groups=(segment,), profile_counts=0, full_listing=True),
                KlaviyoClient(BENCH_KEY, base_url=url, budget=unlimited_budget()),
                wh,
            )
        listing_s = time.perf_counter() - began
    with wh.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT count(*) FROM {plan.table} WHERE left_at IS NULL")).scalar_one()
    assert n_bare == rows == outcome.records_read == total, (n_bare, rows, outcome.records_read, total)
    assert n_ids == listed.listed == total and listed.left == listed.found == 0, (n_ids, listed)
    bare_rate, e2e_rate = total / bare_s, total / e2e_s
    print(f"== segment members: {total:,} in one segment, page size {plan.endpoint.page_size}, limits off")
    print(
        f"(a) bare requests fetch: {bare_rate:>9,.0f} members/s; end to end into {plan.table}: "
        f"{e2e_rate:>9,.0f} members/s = {e2e_rate / bare_rate:.2f}x"
    )
    print(
        f"(c) peak RSS {mb(peak.peak)} ({mb(peak.peak - baseline)} above the start; target < 300 MB); "
        f"at 25%: {mb(marks.get('25%', 0))}, at 100%: {mb(marks.get('100%', 0))}"
    )
    print(
        f"(d) full listing of the ids (relationships route): {total / listing_s:>9,.0f} ids/s end to end "
        f"(listing, then the settle's joins) vs bare fetch {total / ids_bare_s:>9,.0f} ids/s = "
        f"{ids_bare_s / listing_s:.2f}x; peak RSS {mb(listing_peak.peak)}"
    )


def main() -> None:
    which = set(sys.argv[1:]) or {"events", "profiles", "members"}
    if "events" in which:
        measure("events", EVENTS + 3, ["--events", str(EVENTS), "--profiles", "100000"])
    if "profiles" in which:
        measure("profiles", PROFILES, ["--profiles", str(PROFILES), "--events", "1000"])
    if "members" in which:
        measure_members(MEMBERS)


if __name__ == "__main__":
    main()
