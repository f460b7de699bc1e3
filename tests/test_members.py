"""List and segment members, profile counts and profile deletions: the simulator's members as Klaviyo's spec
serves them (schemas, paging, sorts, filters, sparse fieldsets, the ids-only routes, profile_count, hooks), and
the sync against it over HTTP into a real Postgres: a full sync, then incremental ones after members join and
leave, leave the member tables equal to the simulator's; profile_count lands in member_count; profiles deleted
at Klaviyo are soft-deleted by the reconciliation."""

from __future__ import annotations

import datetime as dt
import math
import time
import tracemalloc
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import pytest
import requests
from sqlalchemy import text

from assets.member_sync import MembersRequest, sync_members
from assets.partitions import daily_partitions
from assets.reconcile import deletions, reconcile_deletions
from assets.sync import SyncRequest, sync_entity
from klaviyo_sim import Account
from klaviyo_sim.common import parse_time
from klaviyo_sim.spec import operations
from resources.catalogue import CATALOGUE
from resources.klaviyo import KlaviyoResource
from resources.warehouse.summaries import refresh_summaries
from tests.conftest import TEST_KEY
from tests.test_pipeline import defs_for, mat_metadata, run
from tests.test_sim_entities import pages
from tests.test_simulator import _validator, get

UTC = dt.UTC
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=UTC)
KINDS = {"list_members": "list", "segment_members": "segment"}


def members_of(acct: Account, kind: str) -> dict[tuple[str, str], dt.datetime]:
    """(group id, profile id) -> joined_group_at of every current member of every list or segment."""
    groups = acct.lists if kind == "list" else acct.segments
    return {
        (g.id, pid): joined for g in groups for pid, joined in acct.memberships.members(kind, g.id).items()
    }


def table_members(warehouse, entity: str) -> tuple[dict, dict]:
    """(current members: (group, profile) -> joined_group_at, left ones: (group, profile) -> left_at)."""
    group = CATALOGUE[entity].key[1]
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {group} AS g, profile_id, joined_group_at, left_at FROM {CATALOGUE[entity].table}")
        ).all()
    current = {(r.g, r.profile_id): r.joined_group_at for r in rows if r.left_at is None}
    left = {(r.g, r.profile_id): r.left_at for r in rows if r.left_at is not None}
    return current, left


def load_groups(client, warehouse):
    for entity in ("lists", "segments"):
        sync_entity(SyncRequest(entity, None, None, full_refresh=True), client, warehouse)


# -- the simulator -----------------------------------------------------------------------------------------
def test_seeded_members_are_consistent_with_the_account():
    acct = Account(seed=7, anchor=ANCHOR)
    m = acct.memberships
    everyone = acct.segments[0].id
    assert m.count("segment", everyone) == acct.counts["profiles"]  # the first segment holds every profile
    counts = {
        g.id: m.count(kind, g.id)
        for kind, gs in (("list", acct.lists), ("segment", acct.segments))
        for g in gs
    }
    assert 0 in counts.values() and len(set(counts.values())) > 10  # empty groups and many sizes
    for kind, groups in (("list", acct.lists), ("segment", acct.segments)):
        for g in groups:
            members = m.members(kind, g.id)
            assert len(members) == m.count(kind, g.id)
            created = parse_time(g.attributes["created"])
            for pid, joined in members.items():
                i = acct.profile_index(pid)
                assert created <= joined < ANCHOR and joined >= acct.profile_created(i)
            assert list(members.values()) == sorted(members.values())  # walked in joined_group_at order
    # Deterministic: another account on the same seed has the same members.
    again = Account(seed=7, anchor=ANCHOR)
    assert again.memberships.members("list", acct.lists[2].id) == m.members("list", acct.lists[2].id)


def test_a_segment_of_a_million_members_costs_no_memory():
    acct = Account(seed=7, anchor=ANCHOR, profiles=1_000_000, events=10)
    everyone = acct.segments[0].id
    tracemalloc.start()
    began = time.perf_counter()
    assert acct.memberships.count("segment", everyone) == 1_000_000
    middle = dt.datetime.fromtimestamp(acct.memberships.rule("segment", everyone).joined(500_000), UTC)
    keys = acct.memberships.keys("segment", everyone, middle.timestamp(), math.inf, None, False)
    page = [next(keys) for _ in range(100)]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert page[0][2] == 500_000 and [k[2] for k in page] == list(range(500_000, 500_100))
    assert peak < 2_000_000 and time.perf_counter() - began < 1.0


@pytest.mark.parametrize(
    "operation_id,path",
    [
        ("get_profiles_for_list", "/api/lists/{list}/profiles"),
        ("get_profiles_for_list", "/api/lists/{list}/profiles?page[size]=100&sort=-joined_group_at"),
        ("get_profiles_for_list", "/api/lists/{list}/profiles?additional-fields[profile]=subscriptions"),
        (
            "get_profiles_for_segment",
            "/api/segments/{segment}/profiles?fields[profile]=joined_group_at&page[size]=7",
        ),
        ("get_profile_ids_for_list", "/api/lists/{list}/relationships/profiles?page[size]=100"),
        (
            "get_profile_ids_for_segment",
            "/api/segments/{segment}/relationships/profiles?sort=joined_group_at",
        ),
        ("get_list", "/api/lists/{list}?additional-fields[list]=profile_count"),
        ("get_segment", "/api/segments/{segment}?additional-fields[segment]=profile_count"),
    ],
)
def test_member_routes_validate_against_the_openapi_schema(sim, operation_id, path):
    acct = sim.account
    path = path.format(list=acct.lists[2].id, segment=acct.segments[1].id)
    if "relationships" in path or "/profiles" in path:
        got = pages(sim, path, operation_id)
        assert got[0]["data"] and len(got) > 1 or "page[size]=100" in path
    else:
        body = get(sim, path).json()
        assert not list(_validator(operation_id).iter_errors(body))


def test_member_pages_follow_the_spec(sim):
    acct = sim.account
    ops = operations()
    for op in ("get_profiles_for_list", "get_profile_ids_for_list", "get_profiles_for_segment"):
        assert (ops[op].page_default, ops[op].page_max) == (20, 100)
        assert (ops[op].burst, ops[op].steady) == (75, 750)
        assert ops[op].sorts == ("joined_group_at", "-joined_group_at")
    assert set(ops["get_profiles_for_segment"].scopes) == {"segments:read", "profiles:read"}
    assert ops["get_list"].param_limits[("additional-fields[list]", "profile_count")] == (1, 15)

    seg = acct.segments[1].id
    want = acct.memberships.members("segment", seg)
    listed = [
        d
        for p in pages(
            sim, f"/api/segments/{seg}/profiles?fields[profile]=joined_group_at", "get_profiles_for_segment"
        )
        for d in p["data"]
    ]
    assert {d["id"]: parse_time(d["attributes"]["joined_group_at"]) for d in listed} == want
    assert all(set(d["attributes"]) == {"joined_group_at"} for d in listed)  # the sparse fieldset
    ids = [
        d["id"]
        for p in pages(
            sim, f"/api/segments/{seg}/relationships/profiles?page[size]=9", "get_profile_ids_for_segment"
        )
        for d in p["data"]
    ]
    assert ids == list(want) and all(
        set(d) == {"type", "id"}
        for p in pages(sim, f"/api/segments/{seg}/relationships/profiles", "get_profile_ids_for_segment")
        for d in p["data"]
    )
    newest_first = [
        d["id"]
        for p in pages(
            sim,
            f"/api/segments/{seg}/relationships/profiles?sort=-joined_group_at&page[size]=11",
            "get_profile_ids_for_segment",
        )
        for d in p["data"]
    ]
    assert newest_first == list(reversed(want))

    # joined_group_at filters (the four comparators), and profile_id (segments only).
    stamps = sorted(want.values())
    mid = stamps[len(stamps) // 2]
    bound = mid.strftime("%Y-%m-%dT%H:%M:%SZ")
    later = [
        d["id"]
        for p in pages(
            sim,
            f"/api/segments/{seg}/relationships/profiles?filter=greater-or-equal(joined_group_at,{bound})",
            "get_profile_ids_for_segment",
        )
        for d in p["data"]
    ]
    assert later == [pid for pid, t in want.items() if t >= mid]
    earlier = [
        d["id"]
        for p in pages(
            sim,
            f"/api/segments/{seg}/relationships/profiles?filter=less-than(joined_group_at,{bound})",
            "get_profile_ids_for_segment",
        )
        for d in p["data"]
    ]
    assert earlier == [pid for pid, t in want.items() if t < mid]
    one = next(iter(want))
    body = get(sim, f'/api/segments/{seg}/profiles?filter=equals(profile_id,["{one}"])').json()
    assert [d["id"] for d in body["data"]] == [one]
    r = get(sim, f'/api/lists/{acct.lists[2].id}/profiles?filter=equals(profile_id,["{one}"])')
    assert r.status_code == 400  # lists cannot filter by profile_id
    assert get(sim, f"/api/lists/{acct.lists[2].id}/profiles?page[size]=101").status_code == 400
    assert get(sim, f"/api/lists/{acct.lists[2].id}/profiles?sort=created").status_code == 400
    missing = get(sim, "/api/lists/NOPE00/relationships/profiles")
    assert missing.status_code == 404 and missing.json()["errors"][0]["status"] == 404
    count = get(sim, f"/api/segments/{seg}?additional-fields[segment]=profile_count").json()
    assert count["data"]["attributes"]["profile_count"] == len(want)


def test_hooks_add_and_remove_members(sim):
    acct = sim.account
    lst = acct.lists[2].id
    before = acct.memberships.members("list", lst)
    at = acct.anchor + dt.timedelta(hours=1)  # after every seeded join
    added = acct.memberships.add("list", lst, n=3, at=at)
    removed = acct.memberships.remove("list", lst, n=2)
    now = acct.memberships.members("list", lst)
    assert set(now) == (set(before) | set(added)) - set(removed)
    assert all(now[p] == at for p in added) and list(now)[-3:] == added  # the newest joins come last
    rejoined = acct.memberships.add(
        "list", lst, [acct.profile_index(removed[0])], at=at + dt.timedelta(hours=1)
    )
    assert acct.memberships.members("list", lst)[rejoined[0]] == at + dt.timedelta(hours=1)
    gone = acct.delete_profiles([acct.profile_index(added[0])])
    assert gone[0] not in acct.memberships.members("list", lst)
    assert acct.memberships.count("list", lst) == len(acct.memberships.members("list", lst))
    # Over HTTP, as a simulator in its own process is driven.
    r = requests.post(f"{sim.url}/_sim/remove_members?type=list&id={lst}&n=1", timeout=10)
    assert r.status_code == 200 and r.json()["ids"][0] not in acct.memberships.members("list", lst)


# -- the sync ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("entity", ["list_members", "segment_members"])
def test_full_then_incremental_syncs_leave_the_simulators_members(make_sim, warehouse, client_for, entity):
    acct = Account(seed=7)
    sim = make_sim(acct)
    client = client_for(sim, rate_time_scale=0.01)
    kind = KINDS[entity]
    load_groups(client, warehouse)

    first = sync_members(MembersRequest(entity, profile_counts=0), client, warehouse)
    current, left = table_members(warehouse, entity)
    assert current == members_of(acct, kind) and not left
    groups = acct.lists if kind == "list" else acct.segments
    assert first.groups == first.full_reads == first.listings == len(groups)
    assert first.records_read == len(current) == first.counts.inserted and not first.rejected

    # Members join and leave; a later incremental run reads the joins only (no listing is due).
    busy = [g.id for g in groups if acct.memberships.count(kind, g.id)][:3]
    joined_at = dt.datetime.now(UTC) - dt.timedelta(minutes=2)
    added = {(g, p) for g in busy for p in acct.memberships.add(kind, g, n=4, at=joined_at)}
    removed = {(g, p) for g in busy for p in acct.memberships.remove(kind, g, n=2)}
    sim.requests.clear()
    second = sync_members(MembersRequest(entity, listing_every=None, profile_counts=0), client, warehouse)
    assert second.full_reads == second.listings == 0
    # The joins, and what the lookback reads again (unchanged: skipped).
    assert second.counts.inserted == len(added) and second.counts.updated == 0
    assert second.counts.skipped == second.records_read - len(added) < first.records_read / 4
    current, left = table_members(warehouse, entity)
    assert added <= set(current) and removed <= set(current) and not left  # not listed yet: still members
    # Each read asked for joins since its group's watermark less the lookback, with the join time alone.
    member_calls = [c for c in sim.calls() if c.operation == f"get_profiles_for_{kind}"]
    assert len(member_calls) == len(groups)
    busy_call = next(c for c in member_calls if busy[0] in c.path)
    query = parse_qs(urlsplit("?" + busy_call.query).query)
    assert query["fields[profile]"] == ["joined_group_at"] and query["page[size]"] == ["100"]
    assert query["sort"] == ["joined_group_at"] and query["filter"][0].startswith(
        "greater-or-equal(joined_group_at,"
    )

    # The full listing (the ids-only route) finds who left.
    sim.requests.clear()
    third = sync_members(MembersRequest(entity, full_listing=True, profile_counts=0), client, warehouse)
    assert third.listings == len(groups) and third.left == len(removed) and third.found == 0
    current, left = table_members(warehouse, entity)
    assert current == members_of(acct, kind)
    assert set(left) == removed and all(t >= joined_at for t in left.values())
    assert {c.operation for c in sim.calls()} == {f"get_profiles_for_{kind}", f"get_profile_ids_for_{kind}"}

    # One who left joins again: a member again, with the new join time; nothing else changes on a re-run.
    back_group, back_profile = sorted(removed)[0]
    rejoin = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
    acct.memberships.add(kind, back_group, [acct.profile_index(back_profile)], at=rejoin)
    fourth = sync_members(MembersRequest(entity, profile_counts=0), client, warehouse)
    current, left = table_members(warehouse, entity)
    assert current == members_of(acct, kind) and current[(back_group, back_profile)] == rejoin
    assert set(left) == removed - {(back_group, back_profile)}
    assert fourth.counts.updated == 1 and fourth.counts.inserted == 0


def test_a_member_no_read_returned_is_found_by_the_listing(sim, warehouse, client_for):
    acct = sim.account
    client = client_for(sim, rate_time_scale=0.01)
    load_groups(client, warehouse)
    sync_members(MembersRequest("list_members", profile_counts=0), client, warehouse)
    lst = next(g.id for g in acct.lists if acct.memberships.count("list", g.id))
    # Joined long before the watermark (Klaviyo processed it late): beyond any incremental read's reach.
    early = parse_time(acct.lists[0].attributes["created"]) + dt.timedelta(seconds=1)
    (pid,) = acct.memberships.add("list", lst, n=1, at=early)
    quiet = sync_members(
        MembersRequest("list_members", listing_every=None, profile_counts=0), client, warehouse
    )
    assert quiet.counts.inserted == 0  # the lookback's re-reads only
    listed = sync_members(
        MembersRequest("list_members", full_listing=True, profile_counts=0), client, warehouse
    )
    assert listed.found == 1
    current, _ = table_members(warehouse, "list_members")
    assert (lst, pid) in current and current[(lst, pid)] is None  # a member; when it joined is not known yet
    sync_members(MembersRequest("list_members", full_refresh=True, profile_counts=0), client, warehouse)
    current, _ = table_members(warehouse, "list_members")
    assert current == members_of(acct, "list")


def test_members_of_deleted_groups_leave_and_a_gone_group_is_skipped(sim, warehouse, client_for):
    acct = sim.account
    client = client_for(sim, rate_time_scale=0.01)
    load_groups(client, warehouse)
    sync_members(MembersRequest("segment_members", profile_counts=0), client, warehouse)
    # A segment deleted at Klaviyo: the next run gets 404 for it and goes on; once the reconciliation marks it
    # deleted, its members leave it.
    (gone,) = acct.delete("segment", 1)
    had = {k for k in table_members(warehouse, "segment_members")[0] if k[0] == gone}
    assert had
    skipped = sync_members(MembersRequest("segment_members", profile_counts=3), client, warehouse)
    assert skipped.missing == [gone] and skipped.left_with_group == 0
    reconcile_deletions("segments", client, warehouse)
    after = sync_members(MembersRequest("segment_members", profile_counts=0), client, warehouse)
    assert after.left_with_group == len(had)
    current, left = table_members(warehouse, "segment_members")
    assert not any(k[0] == gone for k in current) and had <= set(left)


def test_profile_count_lands_in_member_count_and_the_newer_reading_wins(sim, warehouse, client_for):
    acct = sim.account
    client = client_for(sim, rate_time_scale=0.01)
    load_groups(client, warehouse)
    sim.requests.clear()
    first = sync_members(MembersRequest("list_members", profile_counts=5), client, warehouse)
    assert len(first.member_counts) == 5  # the XS tier's budget of this run
    calls = [c for c in sim.calls() if c.operation == "get_list"]
    assert len(calls) == 5 and all("profile_count" in c.query for c in calls)
    sync_members(MembersRequest("list_members", profile_counts=100), client, warehouse)
    sync_members(MembersRequest("segment_members", profile_counts=100), client, warehouse)
    with warehouse.engine.connect() as conn:
        lists = dict(conn.execute(text("SELECT id, member_count FROM klaviyo_lists")).all())
        segs = conn.execute(text("SELECT id, member_count, member_count_at FROM klaviyo_segments")).all()
    assert lists == {g.id: acct.memberships.count("list", g.id) for g in acct.lists}
    assert {r.id: r.member_count for r in segs} == {
        g.id: acct.memberships.count("segment", g.id) for g in acct.segments
    }
    read_at = {r.id: r.member_count_at for r in segs}

    # The segment report's total_members replaces profile_count only when it is the newer reading.
    old, new = acct.segments[1].id, acct.segments[2].id
    today = dt.datetime.now(UTC).date()
    with warehouse.engine.begin() as conn:
        for sid, day, fetched in (
            (old, today - dt.timedelta(days=3), read_at[old] - dt.timedelta(days=2)),
            (new, today, read_at[new] + dt.timedelta(seconds=5)),
        ):
            conn.execute(
                text(
                    """INSERT INTO klaviyo_segment_stats_daily (account_id, segment_id, day, total_members,
                         members_added, fetched_at) VALUES (:a, :s, :d, 424242, 1, :f)"""
                ),
                {"a": acct.account_id, "s": sid, "d": day, "f": fetched},
            )
    refresh_summaries(warehouse, acct.account_id, today, 30, "UTC")
    with warehouse.engine.connect() as conn:
        after = {
            r.id: r
            for r in conn.execute(text("SELECT id, member_count, member_count_at FROM klaviyo_segments"))
        }
    assert after[old].member_count == acct.memberships.count("segment", old) and after[old].member_count_at
    assert after[new].member_count == 424242 and after[new].member_count_at is None
    sync_members(MembersRequest("segment_members", profile_counts=100, groups=(new,)), client, warehouse)
    with warehouse.engine.connect() as conn:
        again = conn.execute(
            text("SELECT member_count, member_count_at FROM klaviyo_segments WHERE id = :s"), {"s": new}
        ).one()
    assert again.member_count == acct.memberships.count("segment", new) and again.member_count_at


def test_the_dagster_assets_load_members_and_their_checks_pass(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    for job in ("klaviyo_sync_lists", "klaviyo_sync_segments"):
        assert run(defs, job, start=first, end=today).success
    config = {"ops": {f"klaviyo__{e}": {"config": {"profile_counts": 100}} for e in KINDS}}
    for entity in KINDS:
        result = run(
            defs,
            f"klaviyo_sync_{entity}",
            config={"ops": {f"klaviyo__{entity}": config["ops"][f"klaviyo__{entity}"]}},
        )
        assert result.success
        meta = mat_metadata(result, entity)
        kind = KINDS[entity]
        assert meta["dagster/row_count"] == len(members_of(sim.account, kind))
        assert meta["profile_counts_read"] == len(
            sim.account.lists if kind == "list" else sim.account.segments
        )
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed or c.check_name == "known_references" for c in checks), [
            (c.check_name, c.metadata) for c in checks if not c.passed
        ]
        assert {c.check_name for c in checks} >= {
            "required_columns",
            "loaded_what_the_api_reported",
            "watermark_never_moves_back",
        }


# -- profile deletions ---------------------------------------------------------------------------------------
def test_profiles_klaviyo_deleted_are_soft_deleted_by_an_id_listing(sim, warehouse, client_for):
    acct = sim.account
    client = client_for(sim, rate_time_scale=0.01)
    sync_entity(SyncRequest("profiles", None, None, full_refresh=True), client, warehouse)
    gone = set(acct.delete_profiles([3, 50, 399]))
    sim.requests.clear()
    result = reconcile_deletions("profiles", client, warehouse)
    assert set(result.marked_deleted) == gone and result.listed == acct.counts["profiles"] - 3
    calls = sim.calls("get_profiles")
    assert len(calls) == math.ceil(result.listed / 100)
    query = parse_qs(urlsplit("?" + calls[0].query).query)
    assert query == {"fields[profile]": ["id"], "page[size]": ["100"]}
    with warehouse.engine.connect() as conn:
        deleted = set(
            conn.execute(text("SELECT id FROM klaviyo_profiles WHERE deleted_at IS NOT NULL")).scalars()
        )
    assert deleted == gone
    assert reconcile_deletions("profiles", client, warehouse).marked_deleted == []  # nothing more


def test_a_short_profile_listing_marks_nothing(sim, warehouse, client_for):
    from assets.reconcile import ReconcileRefused

    acct = sim.account
    client = client_for(sim, rate_time_scale=0.01)
    sync_entity(SyncRequest("profiles", None, None, full_refresh=True), client, warehouse)
    acct.delete_profiles(list(range(300)))
    with pytest.raises(ReconcileRefused, match="nothing was marked"):
        reconcile_deletions("profiles", client, warehouse, max_deleted_share=0.5)
    with warehouse.engine.connect() as conn:
        assert not conn.execute(
            text("SELECT count(*) FROM klaviyo_profiles WHERE deleted_at IS NOT NULL")
        ).scalar()


def test_the_weekly_schedule_reconciles_profiles_through_the_asset(sim, warehouse, client_for):
    from pipelines.schedules import klaviyo_reconcile_profiles_schedule

    assert klaviyo_reconcile_profiles_schedule.cron_schedule == "45 3 * * 0"
    config = (
        klaviyo_reconcile_profiles_schedule.evaluate_tick(
            dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 22, 3, 45, tzinfo=UTC))
        )
        .run_requests[0]
        .run_config
    )
    client = client_for(sim, rate_time_scale=0.01)
    sync_entity(SyncRequest("profiles", None, None, full_refresh=True), client, warehouse)
    gone = sim.account.delete_profiles([7])
    result = dg.materialize(
        [deletions],
        resources={
            "klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url, rate_time_scale=0.01),
            "warehouse": warehouse,
        },
        run_config=config,
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = result.asset_materializations_for_node("klaviyo__deletions")[0].metadata
    assert meta["deleted_profiles"].value == 1 and meta["deleted_ids"].value == {"profiles": gone}
    assert set(meta) >= {"listed_profiles"} and not any(k.startswith("deleted_flows") for k in meta)
