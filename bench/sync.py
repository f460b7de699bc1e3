"""Requests and wall time of a full sync and of a no-change incremental run on the simulator's medium
account (real rate limits), through the Dagster job, against the minimum pages the API needs."""

from __future__ import annotations

import math
import time

import dagster as dg
from _common import BENCH_KEY, scratch_warehouse, simulator_process
from sqlalchemy import text


def minimum_pages() -> dict[str, int]:
    """Pages the API needs at its largest page sizes, from the same seeded account the simulator serves."""
    from klaviyo_sim import Account
    from resources.catalogue import MESSAGE_ACTION_TYPES

    acct = Account(seed=7, scale="medium")
    pages: dict[str, int] = {}
    for channel in ("email", "sms", "mobile_push"):
        for archived in (False, True):
            n = sum(
                1
                for c in acct.campaigns
                if c.internal["messages.channel"] == channel and c.attributes["archived"] == archived
            )
            pages["campaigns"] = pages.get("campaigns", 0) + max(1, math.ceil(n / 100))
    for archived in (False, True):
        n = sum(1 for f in acct.flows if f.attributes["archived"] == archived)
        pages["flows"] = pages.get("flows", 0) + max(1, math.ceil(n / 50))
    pages["forms"] = max(1, math.ceil(len(acct.forms) / 100))
    pages["segments"] = max(1, math.ceil(len(acct.segments) / 10))
    pages["lists"] = max(1, math.ceil(len(acct.lists) / 10))
    pages["metrics"] = max(1, math.ceil(len(acct.metrics) / 200))
    pages["tags"] = max(1, math.ceil(len(acct.tags) / 50))
    # Flow steps come with the flows' pages (include=flow-actions). Messages and form versions are listed only
    # under one step or form: a request per step that sends a message (one page, 50 a page) and per form.
    pages["flow_messages"] = sum(
        1 for a in acct.flow_actions if a.internal["action_type"] in MESSAGE_ACTION_TYPES
    )
    pages["form_versions"] = sum(
        max(1, math.ceil(len(f.relationships["form-versions"]) / 100)) for f in acct.forms
    )
    pages["account lookup"] = 1
    return pages


def calls_by_entity(warehouse, run_id: str) -> dict[str, int]:
    with warehouse.engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT entity, api_calls FROM klaviyo_sync_runs WHERE run_id = :r"), {"r": run_id}
            ).all()
        )


def main() -> None:
    from assets.entities import entity_assets
    from assets.partitions import daily_partitions
    from pipelines.jobs import all_entities_job
    from resources.klaviyo import KlaviyoResource

    wh = scratch_warehouse("bench_sync")
    with simulator_process("--scale", "medium") as (url, _proc):
        defs = dg.Definitions(
            assets=entity_assets,
            jobs=[all_entities_job],
            resources={"klaviyo": KlaviyoResource(api_key=BENCH_KEY, base_url=url), "warehouse": wh},
        )
        job = defs.resolve_job_def("klaviyo_sync_all")
        instance = dg.DagsterInstance.ephemeral()
        first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
        began = time.perf_counter()
        full = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": today},
        )
        full_s = time.perf_counter() - began
        began = time.perf_counter()
        incr = job.execute_in_process(instance=instance, partition_key=today)
        incr_s = time.perf_counter() - began
    assert full.success and incr.success
    minimum = minimum_pages()
    full_calls, incr_calls = calls_by_entity(wh, full.run_id), calls_by_entity(wh, incr.run_id)
    with wh.engine.connect() as conn:
        loaded = dict(
            conn.execute(
                text("SELECT entity, rows_inserted FROM klaviyo_sync_runs WHERE run_id = :r"),
                {"r": full.run_id},
            ).all()
        )
    passes = {
        "campaigns": 6,
        "flows": 2,
        "forms": 1,
        "segments": 1,
        "lists": 1,
        "metrics": 1,
        "tags": minimum["tags"],
    }
    print(f"medium account, {sum(loaded.values()):,} rows loaded: {loaded}")
    print(
        f"(a) full sync: {sum(full_calls.values())} requests vs {sum(minimum.values())} minimum pages "
        f"= {sum(full_calls.values()) / sum(minimum.values()):.2f}x (target <= 1.1x); wall {full_s:.1f} s"
    )
    print(f"    per entity: {full_calls}; minimum: {minimum}")
    print(
        f"(b) incremental, no change: {sum(incr_calls.values())} requests for {sum(passes.values())} entity passes "
        f"(tags is a snapshot: its pages count as its passes); wall {incr_s:.1f} s"
    )
    print(f"    per entity: {incr_calls}")


if __name__ == "__main__":
    main()
