"""Requests and wall time of a full sync and of a no-change incremental run on the simulator's medium account
(real rate limits unless `--time-scale` shrinks them), through the Dagster job, against the fewest requests the
API needs, endpoint by endpoint.

The requests are counted by the simulator, per operation (every request it answered, retries and 429s too);
the minimum is derived from the catalogue (each entity's kind, endpoint, page size and passes) and the
simulator's data, so that an entity added to the catalogue is counted, and its minimum known, without a change
here:
- a windowed or snapshot entity, profiles, events: the pages the simulator serves for each pass (campaigns per
  channel and archived state, flows per archived state) at the catalogue's page size;
- a nested entity (flow messages, form versions): under each parent record, the pages of its children (a
  parent without any needs no request);
- members (MEMBERS): the profiles listing under every list or segment (an empty one is one page), no ids-only
  listing (the first, full read lists the members), and as many profile_count reads as a run makes
  (`MembersConfig.profile_counts`, at most one per group);
- the account lookup: one a run.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import math
import time

import dagster as dg
from _common import BENCH_KEY, counting_simulator_process, scratch_warehouse
from sqlalchemy import text

UTC = dt.UTC
SCALE = "medium"
UNSIZED_PAGE = 200  # a listing that takes no page[size] (metrics) serves this many at a time
ACCOUNT_LOOKUP = "get_accounts"


def operation_ids() -> dict[str, str]:
    """The simulator's spec: each GET path's operationId."""
    from klaviyo_sim.spec import operations

    return {op.path.rstrip("/"): op.operation_id for op in operations().values() if op.method == "get"}


def served_pages(acct, kind: str, conditions: list, size: int) -> int:
    """Pages the simulator serves for a listing at this page size (an empty listing is one page)."""
    from klaviyo_sim.paging import page

    pages, cursor = 0, None
    while True:
        _, cursor = page(acct, kind, conditions, None, cursor, size)
        pages += 1
        if cursor is None:
            return pages


def passes(endpoint) -> list[list]:
    """The listings an endpoint needs, as the catalogue declares them: per channel, per archived state."""
    from klaviyo_sim.filters import Condition

    found: list[list] = [[]]
    if endpoint.channel_passes:
        found = [[Condition("equals", "messages.channel", ch)] for ch in endpoint.channel_passes]
    if endpoint.archived_passes:
        found = [[*conds, Condition("equals", "archived", flag)] for conds in found for flag in (False, True)]
    return found


def related(acct, record, rtype: str) -> list:
    """The records of type `rtype` that a record's relationships name."""
    return [
        acct.by_id[(kind, rid)]
        for rel in record.relationships.values()
        for kind, rid in rel
        if kind == rtype and (kind, rid) in acct.by_id
    ]


def resource_type(table: str) -> str:
    """The JSON:API type whose records a warehouse table holds (an entity's, or one loaded with another's)."""
    from assets.transform import INCLUDED_SHAPES
    from resources.catalogue import CATALOGUE

    for entry in CATALOGUE.values():
        if entry.table == table:
            return entry.endpoint.type
    for rtype, shape in INCLUDED_SHAPES.items():
        if shape.table == table:
            return rtype
    raise KeyError(table)


def window(endpoint, *, full: bool, now: dt.datetime) -> list:
    """The conditions of a run's window on the endpoint's timestamp: none in a full sync (its first partition
    reads from the beginning, its last one whatever is dated later, e.g. events ahead of the clock); from the
    start of today (UTC, the entities' partitions) in the incremental run of today's partition."""
    from klaviyo_sim.filters import Condition

    if endpoint.updated_field is None or full:
        return []
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return [Condition("greater-or-equal", endpoint.updated_field, today)]


def listed_pages(url: str, path: str, params: dict[str, str]) -> tuple[int, list[str]]:
    """(pages, ids) of a listing read to its end over HTTP, following `links.next`."""
    import requests
    from _common import HEADERS

    pages, ids = 0, []
    response = requests.get(url + path, params=params, headers=HEADERS, timeout=60)
    while True:
        response.raise_for_status()
        body = response.json()
        pages += 1
        ids += [d["id"] for d in body["data"]]
        following = (body.get("links") or {}).get("next")
        if not following:
            return pages, ids
        response = requests.get(following, headers=HEADERS, timeout=60)


def minimum_requests(
    acct, url: str, *, full: bool, now: dt.datetime, profile_counts: int
) -> tuple[dict[str, int], dict[str, str], list[str]]:
    """({operation: fewest requests}, {operation: what it reads}, entities with no minimum) for a full sync
    (`full`) or a no-change incremental run of today's partition. Records the simulator holds in its
    collections are counted there; others (e.g. catalogs and coupons) by listing them from the simulator at
    `url` (an unlimited one serving `acct`) at the catalogue's page size."""
    from klaviyo_sim.filters import matches
    from klaviyo_sim.paging import field_value
    from resources.catalogue import CATALOGUE, MEMBERS, NESTED
    from resources.klaviyo_api import Cond, build_filter

    ops = operation_ids()
    minimum: dict[str, int] = collections.Counter({ACCOUNT_LOOKUP: 1})
    label = {ACCOUNT_LOOKUP: "account lookup"}
    missing: list[str] = []
    held = set(acct.collections) | {"profile", "event"}

    def over_http(endpoint, extra: dict[str, str] | None = None, path: str | None = None) -> tuple[int, list]:
        """Pages and ids of every pass of a listing the simulator does not hold in its collections."""
        pages, ids = 0, []
        for conds in passes(endpoint):
            params = dict(extra or {})
            if endpoint.page_size:
                params["page[size]"] = str(endpoint.page_size)
            rendered = build_filter(endpoint, [Cond(c.op, c.field, c.value) for c in conds])
            if rendered:
                params["filter"] = rendered
            n, found = listed_pages(url, path or endpoint.path, params)
            pages, ids = pages + n, ids + found
        return pages, ids

    for name, entry in CATALOGUE.items():
        endpoint = entry.endpoint
        op = ops.get(endpoint.path.rstrip("/"))
        if op is None:
            missing.append(name)
            continue
        label[op] = name
        size = endpoint.page_size or UNSIZED_PAGE
        if entry.kind == NESTED:
            owner = CATALOGUE[entry.parent.entity].endpoint
            if endpoint.type in held:
                # Read under the parents whose entity changed in the window (every one, in a full sync).
                parent_type = resource_type(entry.parent.table)
                since = window(owner, full=False, now=now)
                changed = {
                    r.id
                    for r in acct.collections[owner.type]
                    if full or all(matches(c, field_value(r, c.field)) for c in since)
                }
                children = collections.Counter()
                for child in acct.collections[endpoint.type]:
                    for parent in related(acct, child, parent_type):
                        via = [parent] if entry.parent.via is None else related(acct, parent, owner.type)
                        if any(r.id in changed for r in via):
                            children[parent.id] += 1
                minimum[op] += sum(math.ceil(k / size) for k in children.values())
            elif entry.parent.via is None and owner.updated_field is None:
                # Under a snapshot (coupons, categories), which says nothing of what changed: every one, each run.
                for parent_id in over_http(owner)[1]:
                    _, ids = over_http(endpoint, path=endpoint.path.replace("{id}", parent_id))
                    minimum[op] += math.ceil(len(ids) / size)
            else:
                missing.append(name)
        elif entry.kind == MEMBERS:
            group_endpoint = CATALOGUE[entry.member_of].endpoint
            kind = group_endpoint.type
            groups = [g.id for g in acct.collections[kind]]
            minimum[op] += sum(
                max(1, math.ceil(acct.memberships.count(kind, g) / size)) if full else 1 for g in groups
            )
            ids_op = ops[entry.id_listing.path.rstrip("/")]
            label[ids_op] = f"{name} (ids only)"
            minimum[ids_op] += 0  # the first read lists them; a listing is due a day later
            count_op = ops[group_endpoint.path.rstrip("/") + "/{id}"]
            label[count_op] = f"{entry.member_of} profile_count"
            minimum[count_op] += min(len(groups), profile_counts)
        elif endpoint.type in held:
            minimum[op] += sum(
                served_pages(acct, endpoint.type, [*conds, *window(endpoint, full=full, now=now)], size)
                for conds in passes(endpoint)
            )
        elif endpoint.updated_field is None or full:
            minimum[op] += over_http(endpoint)[0]  # a snapshot, or all of it in a full sync
        else:
            minimum[op] += len(passes(endpoint))  # no change today: one page a pass
    return dict(minimum), label, missing


def calls_by_entity(warehouse, run_id: str) -> dict[str, int]:
    """The requests each asset of the run recorded (klaviyo_sync_runs.api_calls)."""
    with warehouse.engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT entity, api_calls FROM klaviyo_sync_runs WHERE run_id = :r ORDER BY entity"),
                {"r": run_id},
            ).all()
        )


def report(title: str, counts: collections.Counter, minimum: dict[str, int], label: dict[str, str]) -> None:
    """Requests per operation against the minimum; a total ratio for the full sync's target."""
    answered = collections.Counter()
    refused = collections.Counter()
    for (op, status), n in counts.items():
        (answered if status < 400 else refused)[op] += n
    total, least = sum(answered.values()) + sum(refused.values()), sum(minimum.values())
    print(f"{title}: {total} requests vs {least} minimum = {total / max(least, 1):.2f}x")
    print(f"    {'endpoint':<58} {'requests':>9} {'refused':>8} {'minimum':>8} {'ratio':>7}")
    for op in sorted(set(answered) | set(refused) | set(minimum), key=lambda o: (label.get(o, "~"), o)):
        least_op = minimum.get(op, 0)
        made = answered[op] + refused[op]
        ratio = f"{made / least_op:.2f}x" if least_op else ("-" if not made else "extra")
        name = f"{label.get(op, '(not in the catalogue)')}: {op}"
        print(f"    {name:<58} {answered[op]:>9} {refused[op]:>8} {least_op:>8} {ratio:>7}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="shrink the rate-limit windows of the simulator and the client alike (0.1: a minute lasts 6 s); "
        "the requests are the same, the wall time is not Klaviyo's",
    )
    args = parser.parse_args()

    from assets.entities import entity_assets, volume_assets
    from assets.members import MembersConfig
    from assets.partitions import daily_partitions
    from klaviyo_sim import Account, Simulator
    from pipelines.jobs import all_entities_job
    from resources.klaviyo import KlaviyoResource

    wh = scratch_warehouse("bench_sync")
    sim_args = ["--scale", SCALE, "--time-scale", str(args.time_scale)]
    with counting_simulator_process(*sim_args) as (url, counts):
        resource = KlaviyoResource(api_key=BENCH_KEY, base_url=url, rate_time_scale=args.time_scale)
        defs = dg.Definitions(
            assets=[*entity_assets, *volume_assets],
            jobs=[all_entities_job],
            resources={"klaviyo": resource, "warehouse": wh},
        )
        job = defs.resolve_job_def("klaviyo_sync_all")
        instance = dg.DagsterInstance.ephemeral()
        first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
        before = counts.read()
        began = time.perf_counter()
        full = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": today},
        )
        full_s = time.perf_counter() - began
        full_at, after_full = dt.datetime.now(UTC), counts.read()
        began = time.perf_counter()
        incr = job.execute_in_process(instance=instance, partition_key=today)
        incr_s = time.perf_counter() - began
        incr_at, after_incr = dt.datetime.now(UTC), counts.read()
    assert full.success and incr.success

    acct = Account(seed=7, scale=SCALE)  # the account the simulator served (same seed, same day)
    profile_counts = MembersConfig().profile_counts
    with Simulator(acct, rate_limits=False) as sim:
        full_min, label, missing = minimum_requests(
            acct, sim.url, full=True, now=full_at, profile_counts=profile_counts
        )
        incr_min, incr_label, _ = minimum_requests(
            acct, sim.url, full=False, now=incr_at, profile_counts=profile_counts
        )
    with wh.engine.connect() as conn:
        loaded = dict(
            conn.execute(
                text("SELECT entity, rows_inserted FROM klaviyo_sync_runs WHERE run_id = :r ORDER BY entity"),
                {"r": full.run_id},
            ).all()
        )
    print(f"{SCALE} account, {sum(loaded.values()):,} rows loaded: {loaded}")
    if args.time_scale != 1.0:
        print(f"rate-limit windows scaled by {args.time_scale} (simulator and client)")
    if missing:
        print(f"in the catalogue, no minimum derived (not served by the simulator): {', '.join(missing)}")
    report(f"(a) full sync, wall {full_s:.1f} s (target <= 1.1x)", after_full - before, full_min, label)
    recorded = calls_by_entity(wh, full.run_id)
    print(f"    as the assets recorded them: {sum(recorded.values())} {recorded}")
    report(f"(b) incremental, no change, wall {incr_s:.1f} s", after_incr - after_full, incr_min, incr_label)
    recorded = calls_by_entity(wh, incr.run_id)
    print(f"    as the assets recorded them: {sum(recorded.values())} {recorded}")


if __name__ == "__main__":
    main()
