"""The Dagster pipeline end to end: simulator over HTTP, real Postgres, real Dagster (ephemeral instance)."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
from sqlalchemy import text

from assets.entities import entity_assets, volume_assets
from assets.partitions import daily_partitions
from klaviyo_sim.commerce import store
from klaviyo_sim.data import Resource
from pipelines.checks import entity_checks
from pipelines.jobs import all_entities_job, entity_jobs
from pipelines.schedules import klaviyo_incremental_schedule, klaviyo_settle_schedule
from pipelines.sensors import klaviyo_bootstrap_sensor, klaviyo_change_sensor
from resources.catalogue import ALL_ENTITIES as ALL_ASSETS
from resources.catalogue import CATALOGUE
from resources.catalogue import SMALL_ENTITIES as ENTITIES
from resources.klaviyo import KlaviyoResource
from resources.klaviyo_api import parse_timestamp
from resources.warehouse import Warehouse
from tests.conftest import TEST_KEY, WAREHOUSE_SCHEMA, account_fingerprint, db_url, start_simulator

UTC = dt.UTC
KIND = {
    "campaigns": "campaign",
    "flows": "flow",
    "forms": "form",
    "segments": "segment",
    "lists": "list",
    "metrics": "metric",
    "tags": "tag",
    "templates": "template",
    "tag_groups": "tag-group",
    "catalog_items": "catalog-item",
    "catalog_categories": "catalog-category",
    "coupons": "coupon",
}
STAMP = {"campaigns": "updated_at", "forms": "updated_at"}


def sim_records(acct, entity) -> list[Resource]:
    """The simulator's records of an entity (catalogs and coupons are held by its commerce store)."""
    kind = KIND[entity]
    return acct.collections[kind] if kind in acct.collections else store(acct).all(kind)


def defs_for(sim, warehouse, **klaviyo_kwargs) -> dg.Definitions:
    # The simulator's limits are off here; the client's own budget runs on a fast clock so that runs are
    # not paced at Klaviyo's real per-minute limits (test_client covers the budget).
    klaviyo_kwargs.setdefault("rate_time_scale", 0.01)
    return dg.Definitions(
        assets=[*entity_assets, *volume_assets],
        asset_checks=entity_checks,
        jobs=[all_entities_job, *entity_jobs.values()],
        resources={
            "klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url, **klaviyo_kwargs),
            "warehouse": warehouse,
        },
    )


def run(defs, job="klaviyo_sync_all", *, partition=None, start=None, end=None, config=None, selection=None):
    tags = {}
    if start:
        tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
    return defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=partition,
        tags=tags,
        run_config=config or {},
        asset_selection=selection,
        raise_on_error=False,
    )


def rows(warehouse, entity) -> dict[str, dict]:
    with warehouse.engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM klaviyo_{entity} ORDER BY id"))
        return {r.id: dict(r._mapping) for r in result}


def status(warehouse, entity):
    with warehouse.engine.connect() as conn:
        return conn.execute(
            text("SELECT * FROM klaviyo_sync_status WHERE entity = :e"), {"e": entity}
        ).one_or_none()


def sim_stamp(resource: Resource, entity: str) -> dt.datetime:
    return parse_timestamp(resource.attributes[STAMP.get(entity, "updated")])


def busiest_day(sim, entity) -> str:
    days = [sim_stamp(r, entity).date() for r in sim.account.collections[KIND[entity]]]
    first = dt.date.fromisoformat(daily_partitions.get_first_partition_key())
    candidates = [d for d in days if d > first]
    return max(set(candidates), key=candidates.count).isoformat()


def mat_metadata(result, entity):
    mats = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["klaviyo", entity])
    ]
    return {k: v.value for k, v in mats[-1].materialization.metadata.items()}


@pytest.mark.parametrize("entity", ["campaigns", "flows", "forms", "segments", "lists", "templates"])
def test_a_partition_loads_exactly_the_records_of_its_window(sim, warehouse, entity):
    defs = defs_for(sim, warehouse)
    day = busiest_day(sim, entity)
    result = run(defs, entity_jobs[entity].name, partition=day)
    assert result.success
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    want = {
        r.id: r
        for r in sim.account.collections[KIND[entity]]
        if start <= sim_stamp(r, entity) < start + dt.timedelta(days=1)
    }
    got = rows(warehouse, entity)
    assert set(got) == set(want) and want
    for rid, r in want.items():
        assert got[rid]["name"] == r.attributes.get("name")
        assert got[rid]["updated_date"] == sim_stamp(r, entity)
        assert got[rid]["account_id"] == sim.account.account_id
        if "archived" in r.attributes:
            assert got[rid]["archived"] == r.attributes["archived"]
        assert got[rid]["metadata"]["attributes"]["name"] == r.attributes.get("name")
    meta = mat_metadata(result, entity)
    assert meta["rows_inserted"] == len(want) and meta["records_read"] == len(want)
    assert meta["api_calls"] >= 1 and "preview" in meta
    # The table's columns with the migrations' comments, and its name, for the asset page.
    columns = {c.name: c for c in meta["dagster/column_schema"].columns}
    assert "updated_date" in columns and columns["updated_date"].description
    assert columns["id"].constraints.nullable is False
    assert meta["dagster/table_name"] == f"{warehouse.schema_name}.klaviyo_{entity}"
    assert sim.client_errors == []

    # A second run changes nothing.
    before = rows(warehouse, entity)
    again = run(defs, entity_jobs[entity].name, partition=day)
    assert again.success
    meta = mat_metadata(again, entity)
    assert (meta["rows_inserted"], meta["rows_updated"], meta["rows_skipped"]) == (0, 0, len(want))
    assert rows(warehouse, entity) == before


@pytest.fixture(scope="session")
def full_history(databases, warehouse_template, tmp_path_factory):
    """One run of every entity over the whole history of the seed-7 account, once per session, into a copy
    of the migrated template: the run is checked by test_full_history..., and the change sensor's test starts
    from a copy of the warehouse it left. Yields the run's result, that database and the account's fingerprint.
    """
    name = databases.create(warehouse_template)
    warehouse = Warehouse(url=db_url(databases.admin_url, name), schema_name=WAREHOUSE_SCHEMA)
    sim = start_simulator(rate_limits=False)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("KLAVIYO_RATE_STATE_DIR", str(tmp_path_factory.mktemp("rate")))
            first, today = (
                daily_partitions.get_first_partition_key(),
                daily_partitions.get_last_partition_key(),
            )
            result = run(defs_for(sim, warehouse), start=first, end=today)
        fingerprint = account_fingerprint(sim.account)
    finally:
        warehouse.dispose()
        databases.seal(name)
        sim.stop()
    yield result, name, fingerprint
    databases.drop_later([name])


def loaded_by_full_history(sim, make_warehouse, full_history) -> tuple:
    """The session's full-history run and a copy of the warehouse it loaded, for a test whose simulator
    serves the very same account."""
    result, template, fingerprint = full_history
    assert account_fingerprint(sim.account) == fingerprint, "the simulator's account changed"
    return result, make_warehouse(template)


def test_full_history_loads_every_entity_and_the_checks_pass(sim, make_warehouse, full_history):
    result, warehouse = loaded_by_full_history(sim, make_warehouse, full_history)
    assert result.success
    acct = sim.account
    assert set(rows(warehouse, "profiles")) == {acct.profile_id(i) for i in range(acct.counts["profiles"])}
    assert set(rows(warehouse, "events")) == {acct.event_id(i) for i in range(acct.total_events)}
    for entity in ENTITIES:
        got = rows(warehouse, entity)
        assert set(got) == {r.id for r in sim_records(acct, entity)}, entity
        s = status(warehouse, entity)
        assert s.status == "success" and s.run_id == result.run_id
        if CATALOGUE[entity].cursor:
            assert s.watermark == max(sim_stamp(r, entity) for r in sim_records(acct, entity))
    checks = result.get_asset_check_evaluations()
    assert len(checks) == sum(len(c.check_keys) for c in entity_checks)  # every check of every entity ran
    assert all(c.passed for c in checks), [(c.asset_key, c.check_name) for c in checks if not c.passed]
    with warehouse.engine.connect() as conn:
        runs = conn.execute(
            text("SELECT entity, status, api_calls, records_read FROM klaviyo_sync_runs")
        ).all()
    assert sorted(r.entity for r in runs) == sorted(ALL_ASSETS)
    assert all(r.status == "success" and r.api_calls >= 1 for r in runs)


def test_incremental_run_brings_exactly_the_updated_records(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_flows", start=first, end=today).success
    mark = status(warehouse, "flows").watermark
    touched = sim.account.touch("flow", 3, at=dt.datetime.now(UTC) - dt.timedelta(seconds=30))
    result = run(defs, "klaviyo_sync_flows", partition=today)
    assert result.success
    meta = mat_metadata(result, "flows")
    assert meta["rows_updated"] == 3 and meta["rows_inserted"] == 0
    got = rows(warehouse, "flows")
    for rid in touched:
        assert "(edited" in got[rid]["name"]
    assert status(warehouse, "flows").watermark > mark
    # The read started from the watermark minus the lookback, not from the start of the day.
    assert dt.datetime.fromisoformat(meta["window_start"]) == mark - dt.timedelta(hours=1)


def test_a_seven_day_backfill_is_one_run_equal_to_seven_single_days(sim, make_warehouse):
    days = sorted({sim_stamp(r, "campaigns").date() for r in sim.account.campaigns})
    end = days[len(days) // 2]
    start = end - dt.timedelta(days=6)
    one, seven = make_warehouse(), make_warehouse()
    ranged = run(defs_for(sim, one), "klaviyo_sync_campaigns", start=start.isoformat(), end=end.isoformat())
    assert ranged.success
    # One step read the seven days as one window and materialized each of the seven partitions.
    steps = [e.step_key for e in ranged.all_events if e.event_type_value == "STEP_START"]
    assert steps.count("klaviyo__campaigns") == 1
    mats = [
        e
        for e in ranged.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["klaviyo", "campaigns"])
    ]
    assert sorted(e.partition for e in mats) == [(start + dt.timedelta(days=k)).isoformat() for k in range(7)]
    meta = mat_metadata(ranged, "campaigns")
    window = [dt.datetime.combine(start + dt.timedelta(days=k), dt.time(), UTC) for k in (0, 7)]
    assert [dt.datetime.fromisoformat(meta[k]) for k in ("window_start", "window_end")] == window
    in_window = [r for r in sim.account.campaigns if window[0] <= sim_stamp(r, "campaigns") < window[1]]
    assert meta["records_read"] == meta["rows_inserted"] == len(in_window) > 0
    # Each partition's event says that day's rows; the run's figures come once, on the newest day, labelled.
    per_day = {e.partition: e.materialization.metadata for e in mats}
    for k in range(7):
        day = start + dt.timedelta(days=k)
        want = sum(1 for r in in_window if sim_stamp(r, "campaigns").date() == day)
        assert per_day[day.isoformat()]["dagster/row_count"].value == want
        has_window_figures = "rows_inserted" in per_day[day.isoformat()]
        assert has_window_figures == (k == 6)
    assert meta["figures_cover"] == f"the run's whole window: {start} .. {end} (7 partitions)"
    for k in range(7):
        day = (start + dt.timedelta(days=k)).isoformat()
        assert run(defs_for(sim, seven), "klaviyo_sync_campaigns", partition=day).success
    strip = lambda r: {k: v for k, v in r.items() if k not in ("created_at", "updated_at", "last_synced_at")}  # noqa: E731
    a = {k: strip(v) for k, v in rows(one, "campaigns").items()}
    b = {k: strip(v) for k, v in rows(seven, "campaigns").items()}
    assert a == b and a
    assert all(e.backfill_policy == dg.BackfillPolicy.single_run() for e in entity_assets if e.partitions_def)


def test_a_run_killed_by_faults_changes_nothing_and_a_rerun_completes(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_flows", start=first, end=today).success
    before, mark = rows(warehouse, "flows"), status(warehouse, "flows").watermark
    touched = sim.account.touch("flow", 2, at=dt.datetime.now(UTC) - dt.timedelta(seconds=30))
    failing = defs_for(sim, warehouse, max_attempts=2)
    # Every listing fails, past the client's and the step's retry budgets (the account lookup still works).
    sim.faults.operations = {"get_flows"}
    sim.faults.rate_503 = 1.0
    result = run(failing, "klaviyo_sync_flows", partition=today)
    assert not result.success
    assert rows(warehouse, "flows") == before
    s = status(warehouse, "flows")
    assert s.status == "failed" and "503" in s.last_error and s.watermark == mark
    sim.faults.rate_503 = 0.0
    rerun = run(defs, "klaviyo_sync_flows", partition=today)
    assert rerun.success
    got = rows(warehouse, "flows")
    assert all("(edited" in got[rid]["name"] for rid in touched)
    assert status(warehouse, "flows").status == "success"


def test_a_failure_mid_window_rolls_back_what_was_loaded(sim, warehouse):
    defs = defs_for(sim, warehouse, max_attempts=1)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    # Segments come 10 per page: let two pages succeed, then fail every request.
    sim.faults.operations = {"get_segments"}
    sim.faults.queue(None, None, *["503"] * 20)  # two pages load, then every request fails
    assert not run(defs, "klaviyo_sync_segments", start=first, end=today).success
    assert rows(warehouse, "segments") == {}
    assert status(warehouse, "segments").watermark is None
    assert status(warehouse, "segments").status == "failed"
    sim.faults.script.clear()
    assert run(defs, "klaviyo_sync_segments", start=first, end=today).success
    assert len(rows(warehouse, "segments")) == len(sim.account.segments)


def test_bad_records_are_reported_and_do_not_stop_the_others(sim, warehouse):
    acct = sim.account
    acct.metrics.append(
        Resource(
            "metric",
            "BADTS1",
            {"name": "Bad time", "created": "x", "updated": "not-a-date", "integration": {}},
        )
    )
    acct.metrics.append(
        Resource("metric", "", {"name": "No id", "created": None, "updated": None, "integration": {}})
    )
    acct.metrics.append(
        Resource(
            "metric",
            "NEWFLD",
            {
                "name": "New field",
                "created": None,
                "updated": "2025-05-05 10:00:00.123456+00:00",
                "integration": {},
                "brand_new": {"x": 1},
            },
        )
    )
    defs = defs_for(sim, warehouse)
    result = run(defs, "klaviyo_sync_metrics", partition=daily_partitions.get_first_partition_key())
    assert result.success
    meta = mat_metadata(result, "metrics")
    assert meta["records_rejected"] == 2
    got = rows(warehouse, "metrics")
    assert len(got) == len(acct.metrics) - 2
    assert got["NEWFLD"]["metadata"]["attributes"]["brand_new"] == {"x": 1}
    assert got["NEWFLD"]["updated_date"] == dt.datetime(2025, 5, 5, 10, 0, 0, 123456, tzinfo=UTC)
    check = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not check["loaded_what_the_api_reported"].passed
    assert check["required_columns"].passed and check["no_future_updates"].passed


def test_change_sensor_skips_with_one_request_per_pass_and_asks_for_today(sim, make_warehouse, full_history):
    # The warehouse after a full-history run of every entity (the session's, on the same account).
    result, warehouse = loaded_by_full_history(sim, make_warehouse, full_history)
    assert result.success
    today = daily_partitions.get_last_partition_key()
    resources = {"klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url), "warehouse": warehouse}
    instance = dg.DagsterInstance.ephemeral()
    ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=None)
    before = len(sim.calls())
    result = klaviyo_change_sensor(ctx)
    assert isinstance(result, dg.SkipReason)
    calls = [c.operation for c in sim.calls()[before:]]
    # campaigns: 3 channels x 2 archived; flows: 2 archived; forms, segments, lists, templates: 1; metrics: 1
    # (no sort).
    assert sorted(calls) == sorted(
        ["get_accounts"]
        + ["get_campaigns"] * 6
        + ["get_flows"] * 2
        + [
            "get_forms",
            "get_segments",
            "get_lists",
            "get_metrics",
            "get_templates",
            "get_profiles",
            "get_events",
        ]
    )
    cursor = ctx.cursor
    sim.account.touch("flow", 1, at=dt.datetime.now(UTC) - dt.timedelta(seconds=30))
    ctx = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    result = klaviyo_change_sensor(ctx)
    assert isinstance(result, dg.SensorResult)
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [("klaviyo_sync_flows", today)]
    assert result.run_requests[0].run_key.startswith("change:flows:")
    again = klaviyo_change_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    )
    assert isinstance(again, dg.SkipReason)  # asked already; the run has not landed yet


def test_bootstrap_sensor_asks_for_history_on_empty_tables(sim, warehouse, make_warehouse, full_history):
    instance = dg.DagsterInstance.ephemeral()
    klaviyo = KlaviyoResource(api_key=TEST_KEY, base_url=sim.url)  # one account: never called
    calls = len(sim.calls())
    ctx = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse, "klaviyo": klaviyo})
    result = klaviyo_bootstrap_sensor(ctx)
    assert len(sim.calls()) == calls
    assert isinstance(result, dg.SensorResult)
    by_job = {r.job_name: r for r in result.run_requests}
    # Every entity but those nested under another: their parent's job runs them (its tables include theirs).
    assert set(by_job) == {f"klaviyo_sync_{e}" for e in ALL_ASSETS if CATALOGUE[e].parent is None}
    flows = by_job["klaviyo_sync_flows"]
    assert flows.tags["dagster/asset_partition_range_start"] == daily_partitions.get_first_partition_key()
    assert flows.tags["dagster/asset_partition_range_end"] == daily_partitions.get_last_partition_key()
    assert "dagster/asset_partition_range_start" not in by_job["klaviyo_sync_tags"].tags
    # The run asked for, over that range: the session's full-history run of every entity (the same range, the
    # same account); the sensor now looks at a copy of the warehouse that run loaded.
    ran, warehouse = loaded_by_full_history(sim, make_warehouse, full_history)
    assert ran.success
    for bound in ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end"):
        assert ran.dagster_run.tags[bound] == flows.tags[bound]
    later = klaviyo_bootstrap_sensor(
        dg.build_sensor_context(
            instance=instance, resources={"warehouse": warehouse, "klaviyo": klaviyo}, cursor=None
        )
    )
    assert isinstance(later, dg.SkipReason)

    # An upgrade added a table of included resources (campaign messages): the campaigns are read again in full.
    with warehouse.engine.begin() as conn:
        conn.execute(text("TRUNCATE klaviyo_campaign_messages"))
    upgraded = klaviyo_bootstrap_sensor(
        dg.build_sensor_context(
            instance=instance, resources={"warehouse": warehouse, "klaviyo": klaviyo}, cursor=None
        )
    )
    assert [r.job_name for r in upgraded.run_requests] == ["klaviyo_sync_campaigns"]


def test_schedules_target_the_right_partitions():
    when = dt.datetime(2026, 11, 20, 10, 15, tzinfo=UTC)
    [req] = klaviyo_incremental_schedule(dg.build_schedule_context(scheduled_execution_time=when))
    assert req.partition_key == "2026-11-20"
    [settle] = klaviyo_settle_schedule(
        dg.build_schedule_context(scheduled_execution_time=when.replace(hour=2, minute=30))
    )
    assert settle.partition_key == "2026-11-19"
    assert settle.run_config["ops"]["klaviyo__flows"]["config"]["full_refresh"] is True


def test_definitions_load_with_the_expected_shape():
    from pipelines.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    stats = {
        "flow_stats_daily",
        "form_stats_daily",
        "segment_stats_daily",
        "campaign_stats",
        "entity_summaries",
    }
    views = {f"bi/{v}" for v in ("segments_report", "flows_report", "forms_report", "campaigns_report")}
    views |= {"bi/daily_kpis", "bi/segment_growth"}
    views |= {"bi/flow_step_daily", "bi/flow_step_performance", "bi/segment_membership_daily"}
    views |= {"bi/campaign_audience_members", "bi/campaign_audience_size"}
    assert keys == {f"klaviyo/{e}" for e in (*ALL_ASSETS, *stats, *views, "deletions", "webhook_events")}
    assert {j.name for j in defs.jobs} == {
        "klaviyo_sync_all",
        "klaviyo_sync_stats",
        "klaviyo_full_sync",
        "klaviyo_reconcile_deletions",
        "klaviyo_webhook_events",
        *(f"klaviyo_sync_{e}" for e in ALL_ASSETS),
    }
    assert {s.name for s in defs.schedules} == {
        "klaviyo_incremental_schedule",
        "klaviyo_settle_schedule",
        "klaviyo_events_reread_schedule",
        "klaviyo_reconcile_schedule",
        "klaviyo_reconcile_profiles_schedule",
    }
    assert {s.name for s in defs.sensors} == {
        "klaviyo_change_sensor",
        "klaviyo_bootstrap_sensor",
        "klaviyo_run_failure_sensor",
        "klaviyo_stats_catchup_sensor",
        "klaviyo_stats_automation",
        "klaviyo_webhook_sensor",
    }
    graph = defs.resolve_asset_graph()
    flow_stats = graph.get(dg.AssetKey(["klaviyo", "flow_stats_daily"]))
    assert flow_stats.automation_condition is not None and flow_stats.partitions_def == daily_partitions
    assert {k.to_user_string() for k in flow_stats.parent_keys} == {"klaviyo/flows", "klaviyo/metrics"}
    tags = graph.get(dg.AssetKey(["klaviyo", "tags"]))
    flows = graph.get(dg.AssetKey(["klaviyo", "flows"]))
    assert tags.partitions_def is None and flows.partitions_def == daily_partitions


def test_launched_runs_fork_their_steps_from_a_forkserver_unless_the_run_config_says_otherwise():
    from pipelines.definitions import defs

    for job in defs.jobs:
        schema = defs.resolve_job_def(job.name).executor_def.config_schema
        assert schema.as_field().default_value == {
            "multiprocess": {}
        }  # Dagster's default: a process per step

        def resolved(config: dict, schema=schema) -> dict:  # the executor's config, as a run would have it
            result = schema.resolve_config({"config": config})
            assert result.success, result.errors
            return result.value["config"]

        assert resolved({"multiprocess": {}})["multiprocess"]["start_method"] == {"forkserver": {}}
        limited = resolved({"multiprocess": {"max_concurrent": 2}})["multiprocess"]
        assert limited["max_concurrent"] == 2 and limited["start_method"] == {"forkserver": {}}
        spawn = {"start_method": {"spawn": {}}}
        assert resolved({"multiprocess": spawn})["multiprocess"]["start_method"] == {"spawn": {}}
        assert "in_process" in resolved({"in_process": {}})  # the CLI's runs


def test_run_failure_sensor_marks_the_runs_entities_interrupted(sim, warehouse):
    from pipelines.sensors import klaviyo_run_failure_sensor
    from resources.warehouse import status as sync_status

    instance = dg.DagsterInstance.ephemeral()
    sim.faults.operations = {"get_flows"}
    sim.faults.rate_503 = 1.0
    result = (
        defs_for(sim, warehouse, max_attempts=1)
        .resolve_job_def("klaviyo_sync_flows")
        .execute_in_process(
            instance=instance, partition_key=daily_partitions.get_last_partition_key(), raise_on_error=False
        )
    )
    assert not result.success
    # The run died as if outside the asset (e.g. the process was killed): its status row still says running.
    sync_status.mark_started(warehouse.engine, sim.account.account_id, "flows", result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(
        sensor_name="klaviyo_run_failure_sensor",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
        resources={"warehouse": warehouse},
    ).for_run_failure()
    klaviyo_run_failure_sensor(context)
    row = status(warehouse, "flows")
    assert row.status == "interrupted" and row.run_id == result.run_id and row.last_error


def test_an_edited_template_lands_with_the_next_incremental_run(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_templates", start=first, end=today).success
    before = rows(warehouse, "templates")
    edited = sim.account.touch("template", 2)  # renamed, updated now
    calls = len(sim.calls("get_templates"))
    assert run(defs, "klaviyo_sync_templates", partition=today).success
    assert len(sim.calls("get_templates")) - calls == 1  # one page of what changed since the watermark
    after = rows(warehouse, "templates")
    held = {t.id: t.attributes for t in sim.account.templates}
    assert set(after) == set(held)
    for tid, attrs in held.items():
        row = after[tid]
        assert (row["name"], row["html"], row["updated_date"]) == (
            attrs["name"], attrs["html"], parse_timestamp(attrs["updated"])
        ), tid  # fmt: skip
    assert all("(edited" in after[t]["name"] and after[t]["name"] != before[t]["name"] for t in edited)
    assert {t: after[t] for t in after if t not in edited} == {
        t: before[t] for t in before if t not in edited
    }
    assert status(warehouse, "templates").watermark == max(
        parse_timestamp(a["updated"]) for a in held.values()
    )
