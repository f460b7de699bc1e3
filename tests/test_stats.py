"""Report statistics: simulator over HTTP, real Postgres, real Dagster (ephemeral instance)."""

from __future__ import annotations

import datetime as dt
import uuid

import dagster as dg
import psycopg
import pytest
from sqlalchemy import text

from assets.entities import entity_assets
from assets.report_loading import StatsRequest, load_statistics
from assets.stats import NAME_WIDTH, STATS_KEYS, entity_summaries, klaviyo_stats
from assets.sync import SyncRequest, sync_entity
from klaviyo_sim.reports import (
    FORM_STATS,
    SEGMENT_STATS,
    campaign_statistics,
    form_counts,
    form_statistics,
    message_counts,
    message_statistics,
    segment_day,
)
from pipelines.checks import stats_checks
from pipelines.jobs import full_sync_job, stats_job
from resources.calendar import AccountCalendar
from resources.klaviyo import KlaviyoClient, KlaviyoResource
from resources.ratelimit import RateBudget
from resources.reports import FAMILIES, MESSAGE_COUNTS, ReportCall, plan_calls
from resources.warehouse import Warehouse
from resources.warehouse.core import ensure_database
from resources.warehouse.ledger import ReportLedger
from resources.warehouse.summaries import CHART_DAYS
from tests.conftest import TEST_KEY, WAREHOUSE_SCHEMA, account_fingerprint, db_url, start_simulator

UTC = dt.UTC
TODAY = dt.datetime.now(UTC).date()
SCALE = (
    0.001  # the client's rate windows (reports: 2 a minute) on a fast clock; the simulator's limits are off
)


def defs_for(sim, warehouse) -> dg.Definitions:
    return dg.Definitions(
        assets=[*entity_assets, klaviyo_stats, entity_summaries],
        asset_checks=stats_checks,
        jobs=[stats_job, full_sync_job],
        resources={
            "klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url, rate_time_scale=SCALE),
            "warehouse": warehouse,
        },
    )


def run(defs, job, start, end, config=None, selection=None):
    return defs.resolve_job_def(job).execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(start),
            "dagster/asset_partition_range_end": str(end),
        },
        run_config=config or {},
        asset_selection=selection,
        raise_on_error=False,
    )


UPSTREAM = ("flows", "forms", "segments", "campaigns", "metrics")


def load_entities(client, warehouse):
    """Flows, forms, segments, campaigns and metrics over the whole history (the statistics' upstream; the
    entity assets are tested in test_pipeline, so they are loaded here without a Dagster run)."""
    for entity in UPSTREAM:
        sync_entity(SyncRequest(entity, None, None, full_refresh=True), client, warehouse)


def report_calls(sim) -> list:
    return [c for c in sim.calls() if c.path.endswith("-reports")]


def table(warehouse, name: str, order: str) -> list[dict]:
    with warehouse.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {name} ORDER BY {order}"))]


@pytest.fixture(scope="session")
def upstream_template(databases, warehouse_template, tmp_path_factory):
    """A copy of the migrated template with the upstream of the seed-7 account loaded, once per session:
    every test here gets a copy of it rather than loading the same records again."""
    name = databases.create(warehouse_template)
    sim = start_simulator(rate_limits=False)
    wh = Warehouse(url=db_url(databases.admin_url, name), schema_name=WAREHOUSE_SCHEMA)
    budget = RateBudget("upstream", tmp_path_factory.mktemp("rate"))
    client = KlaviyoClient(TEST_KEY, base_url=sim.url, backoff_base=0.01, now_margin=1.0, budget=budget)
    try:
        load_entities(client, wh)
        fingerprint = account_fingerprint(sim.account)
    finally:
        client.close()
        wh.dispose()  # a database is copied only while nobody is connected to it
        sim.stop()
    yield name, fingerprint
    databases.drop_later([name])


@pytest.fixture
def sim(make_sim):
    """The account without report pages: these tests count report requests as calls (pages are tested in
    test_real_account)."""
    return make_sim(report_page_size=None)


@pytest.fixture
def warehouse(make_warehouse, upstream_template):
    """Here: a warehouse with the statistics' upstream already loaded (a copy of `upstream_template`)."""
    return make_warehouse(upstream_template[0])


@pytest.fixture
def loaded(sim, warehouse, upstream_template):
    # The warehouse holds what load_entities read from an account equal to this test's simulator's.
    assert account_fingerprint(sim.account) == upstream_template[1], "the simulator's account changed"
    return defs_for(sim, warehouse)


# -- planning ---------------------------------------------------------------------------------------------
def test_a_year_of_statistics_takes_a_handful_of_calls():
    year = [dt.date(2025, 1, 1) + dt.timedelta(days=k) for k in range(365)]
    assert [len(plan_calls(FAMILIES[f], year)) for f in ("flow", "form", "segment", "campaign")] == [
        7,
        7,
        7,
        1,
    ]
    flow = plan_calls(FAMILIES["flow"], year)
    assert flow[0] == ReportCall("flow", dt.date(2025, 1, 1), dt.date(2025, 3, 1))  # 60 days, both ends in
    assert sum(len(c.days) for c in flow) == 365 and flow[-1].end == dt.date(2025, 12, 31)
    # Scattered days share a call when they fit in one window; segments have no data before 2023-06-01.
    scattered = [dt.date(2025, 1, 1), dt.date(2025, 1, 20), dt.date(2025, 3, 1), dt.date(2025, 3, 2)]
    assert [(c.start, c.end) for c in plan_calls(FAMILIES["form"], scattered)] == [
        (dt.date(2025, 1, 1), dt.date(2025, 3, 1)),
        (dt.date(2025, 3, 2), dt.date(2025, 3, 2)),
    ]
    assert plan_calls(FAMILIES["segment"], [dt.date(2023, 5, 30), dt.date(2023, 6, 2)])[0].start == dt.date(
        2023, 6, 2
    )


# -- the statistics equal the simulator's -----------------------------------------------------------------
def test_statistics_for_a_range_equal_the_simulator_day_by_day(sim, warehouse, loaded):
    start, end = TODAY - dt.timedelta(days=20), TODAY - dt.timedelta(days=1)
    result = run(loaded, "klaviyo_sync_stats", start, end)
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert set(STATS_KEYS.values()) <= materialized
    account = sim.account
    days = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]

    flows = table(warehouse, "klaviyo_flow_stats_daily", "flow_id, day")
    assert len(flows) == len(account.flows) * len(days)
    stats = FAMILIES["flow"].statistics("2026-07-15")
    for row in flows:
        expected = message_statistics(message_counts(account, "flow", row["flow_id"], row["day"]), stats)
        assert row["statistics"] == expected
        assert [row[c] for c in MESSAGE_COUNTS] == [expected[c] for c in MESSAGE_COUNTS]
        assert row["open_rate"] == expected["open_rate"] and 0 <= row["click_rate"] <= 1
        assert float(row["conversion_value"]) == pytest.approx(expected["conversion_value"])

    forms = table(warehouse, "klaviyo_form_stats_daily", "form_id, day")
    assert len(forms) == len(account.forms) * len(days)
    for row in forms:
        expected = form_statistics(form_counts(account, row["form_id"], row["day"]), FORM_STATS)
        assert row["statistics"] == expected and row["submits"] == expected["submits"]

    segments = table(warehouse, "klaviyo_segment_stats_daily", "segment_id, day")
    assert len(segments) == len(account.segments) * len(days)
    for row in segments:
        expected = segment_day(account, row["segment_id"], row["day"])
        assert {s: row[s] for s in SEGMENT_STATS} == expected

    # Campaigns: every send that began in the range (and up to today: the call reaches today, so no send is
    # cut), each with the figures of its whole send.
    campaigns = table(warehouse, "klaviyo_campaign_stats", "campaign_id")
    sent = {
        c.id for c in account.campaigns if start <= (account.campaign_send_days(c.id) or [TODAY])[0] <= end
    }
    assert sent and sent <= {r["campaign_id"] for r in campaigns}
    for row in campaigns:
        assert row["statistics"] == campaign_statistics(account, row["campaign_id"], stats), row[
            "campaign_id"
        ]
        assert row["timeframe_start"] <= account.campaign_send_days(row["campaign_id"])[0]
        assert row["timeframe_end"] == TODAY
    # Four families, 20 days: one call each.
    assert len(report_calls(sim)) == 4


def test_a_rerun_revises_the_lookback_days_and_duplicates_nothing(sim, warehouse, loaded):
    start, end = TODAY - dt.timedelta(days=30), TODAY
    assert run(loaded, "klaviyo_sync_stats", start, end).success
    before = {t: table(warehouse, FAMILIES[t].table, "1") for t in FAMILIES}
    flow = sim.account.flows[0].id
    recent, old = TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=20)
    sim.account.revise_stats("flow", flow, recent, 5)
    sim.account.revise_stats("flow", flow, old, 5)  # settled: read 13 days after it ended, not read again
    sim.account.revise_stats("segment", sim.account.segments[0].id, recent, 3)
    calls_before = len(report_calls(sim))

    result = run(loaded, "klaviyo_sync_stats", TODAY, TODAY)  # what the automation runs: today's partition
    assert result.success
    assert len(report_calls(sim)) - calls_before == 4  # one call per family: the 7-day lookback
    after = {t: table(warehouse, FAMILIES[t].table, "1") for t in FAMILIES}
    assert {t: len(v) for t, v in after.items()} == {t: len(v) for t, v in before.items()}

    flows = {(r["flow_id"], r["day"]): r for r in after["flow"]}
    assert (
        flows[(flow, recent)]["conversions"]
        == {(r["flow_id"], r["day"]): r for r in before["flow"]}[(flow, recent)]["conversions"] + 5
    )
    assert (
        flows[(flow, old)]["conversions"]
        == {(r["flow_id"], r["day"]): r for r in before["flow"]}[(flow, old)]["conversions"]
    )
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert meta[STATS_KEYS["flow"]]["rows_revised"].value == 1
    assert meta[STATS_KEYS["flow"]]["rows_inserted"].value == 0
    # The segment's later totals moved with the revised day.
    segment_meta = meta[STATS_KEYS["segment"]]
    assert segment_meta["rows_revised"].value == 3  # the revised day, the day after, today
    chart = segment_meta["segment_growth"].value
    assert f"| last {CHART_DAYS} days |" in chart
    # It fits the metadata pane: a character a day, names cut short.
    assert all(len(line) <= NAME_WIDTH + CHART_DAYS + 30 for line in chart.splitlines()[2:]), chart
    # A full refresh reads the settled day too.
    config = {"ops": {"klaviyo_stats": {"config": {"full_refresh": True}}}}
    assert run(loaded, "klaviyo_sync_stats", start, end, config=config).success
    refreshed = {(r["flow_id"], r["day"]): r for r in table(warehouse, "klaviyo_flow_stats_daily", "1")}
    assert refreshed[(flow, old)]["conversions"] == flows[(flow, old)]["conversions"] + 5


# -- the quota ledger --------------------------------------------------------------------------------------
class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_the_ledger_stops_at_the_daily_quota_and_the_next_day_continues(sim, warehouse, loaded, client_for):
    client = client_for(sim, rate_time_scale=SCALE)
    clock = Clock(dt.datetime.now(UTC))
    ledger = ReportLedger(warehouse.engine, client.account_id(), quota=5, clock=clock)
    request = StatsRequest(
        families=["flow", "form", "segment"],
        first_day=TODAY - dt.timedelta(days=170),
        last_day=TODAY - dt.timedelta(days=30),
        run_id="day-1",
    )  # 141 days: 3 calls a family, 9 in all
    day1 = load_statistics(request, client, warehouse, ledger, now=clock())
    assert day1.planned_calls() == 9
    assert [len(f.made) for f in day1.families.values()] == [3, 2, 0]
    assert [len(f.deferred) for f in day1.families.values()] == [0, 1, 3]
    assert len(report_calls(sim)) == 5 and ledger.remaining() == 0
    # Another run the same day, with its own ledger object, gets nothing: the ledger lives in Postgres.
    again = load_statistics(
        request, client, warehouse, ReportLedger(warehouse.engine, client.account_id(), 5, clock)
    )
    assert sum(len(f.made) for f in again.families.values()) == 0 and len(report_calls(sim)) == 5

    clock.now += dt.timedelta(days=1)
    day2 = load_statistics(request, client, warehouse, ledger, now=clock())
    assert day2.planned_calls() == 4  # the flows' days are settled; only what was deferred is left
    assert [len(f.made) for f in day2.families.values()] == [0, 1, 3]
    assert len(report_calls(sim)) == 9
    with warehouse.engine.connect() as conn:
        quota = conn.execute(text("SELECT day, calls FROM klaviyo_report_quota ORDER BY day")).all()
        gaps = conn.execute(
            text(
                """SELECT family, count(*) FROM klaviyo_report_coverage
                   WHERE day BETWEEN :s AND :e GROUP BY family ORDER BY family"""
            ),
            {"s": request.first_day, "e": request.last_day},
        ).all()
    assert [c for _, c in quota] == [5, 4]
    assert dict(gaps) == {"flow": 141, "form": 141, "segment": 141}
    assert len(table(warehouse, "klaviyo_form_stats_daily", "1")) == 141 * len(sim.account.forms)


def test_quota_deferral_leaves_those_families_unmaterialized(sim, warehouse, loaded):
    config = {"ops": {"klaviyo_stats": {"config": {"daily_quota": 2}}}}
    result = run(loaded, "klaviyo_sync_stats", TODAY - dt.timedelta(days=3), TODAY, config=config)
    assert result.success
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized & set(STATS_KEYS.values()) == {STATS_KEYS["flow"], STATS_KEYS["form"]}
    assert len(report_calls(sim)) == 2


def test_a_daily_quota_429_stops_at_once_and_closes_the_day(sim, warehouse, loaded, client_for):
    client = client_for(sim, rate_time_scale=SCALE)
    ledger = ReportLedger(warehouse.engine, client.account_id())
    sim.faults.retry_after = 73473
    sim.faults.queue("429")
    request = StatsRequest(
        families=["flow", "form"], first_day=TODAY - dt.timedelta(days=150), last_day=TODAY, run_id="r"
    )
    outcome = load_statistics(request, client, warehouse, ledger)
    assert outcome.quota_exhausted and len(report_calls(sim)) == 1
    assert sum(len(f.deferred) for f in outcome.families.values()) == outcome.planned_calls()
    assert ledger.remaining() == 0
    with warehouse.engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM klaviyo_report_calls")).scalars().all() == [
            "quota_exhausted"
        ]


def test_a_refused_conversion_metric_is_skipped_with_a_message(sim, warehouse, loaded):
    config = {"ops": {"klaviyo_stats": {"config": {"conversion_metric_name": "Active on Site"}}}}
    start = TODAY - dt.timedelta(days=5)
    result = run(loaded, "klaviyo_sync_stats", start, TODAY, config=config)
    assert result.success
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert "does not support querying for values data" in meta[STATS_KEYS["flow"]]["skipped"].value
    assert meta[STATS_KEYS["form"]]["rows_inserted"].value > 0
    assert table(warehouse, "klaviyo_flow_stats_daily", "1") == []
    refused = len(report_calls(sim))
    assert refused == 3  # flow refused, then form and segment; campaign knows the metric was refused
    assert run(loaded, "klaviyo_sync_stats", start, TODAY, config=config).success
    assert len(report_calls(sim)) - refused == 2  # no call wasted on the refused metric again
    with warehouse.engine.connect() as conn:
        statuses = conn.execute(text("SELECT status, count(*) FROM klaviyo_report_calls GROUP BY 1")).all()
    assert dict(statuses) == {"refused": 1, "ok": 4}


# -- BI: summaries, views, the read-only role ---------------------------------------------------------------
def test_views_return_the_seed_shapes_from_the_summaries(sim, warehouse, loaded):
    start = TODAY - dt.timedelta(days=40)
    result = run(loaded, "klaviyo_sync_stats", start, TODAY)
    assert result.success
    assert dg.AssetKey(["klaviyo", "entity_summaries"]) in {
        e.asset_key for e in result.get_asset_materialization_events()
    }
    checks = [
        e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert len(checks) == 20 and all(c.passed for c in checks), [(c.check_name, c.metadata) for c in checks]
    with warehouse.engine.connect() as conn:
        seg = conn.execute(text("SELECT * FROM klaviyo_segments_report ORDER BY id"))
        assert list(seg.keys())[:6] == ["account_id", "id", "name", "count", "conversion_rate", "revenue"]
        segments = [dict(r._mapping) for r in seg]
        flows = [
            dict(r._mapping) for r in conn.execute(text("SELECT * FROM klaviyo_flows_report ORDER BY id"))
        ]
        kpis = conn.execute(text("SELECT * FROM klaviyo_daily_kpis ORDER BY day")).all()
        growth = conn.execute(text("SELECT * FROM klaviyo_segment_growth ORDER BY segment_id, day")).all()
        forms = conn.execute(text("SELECT * FROM klaviyo_forms_report WHERE views IS NOT NULL")).all()
        campaigns = conn.execute(
            text("SELECT * FROM klaviyo_campaigns_report WHERE recipients IS NOT NULL")
        ).all()
    account = sim.account
    by_id = {s.id: s for s in account.segments}
    for s in segments:
        if s["id"] in by_id:
            assert s["count"] == segment_day(account, s["id"], TODAY)["total_members"]
            assert s["conversion_rate"] is None and s["revenue"] is None
    window = [TODAY - dt.timedelta(days=k) for k in range(30)]
    for f in flows:
        days = [message_counts(account, "flow", f["id"], d) for d in window]
        assert f["recipients"] == sum(d["recipients"] for d in days)
        delivered = sum(d["delivered"] for d in days)
        assert f["open_rate"] == pytest.approx(sum(d["opens_unique"] for d in days) / delivered)
        assert float(f["revenue"]) == pytest.approx(sum(d["conversion_value"] for d in days))
    assert forms and campaigns
    assert len(kpis) == 41 and all(k.recipients > 0 for k in kpis)
    assert len(growth) == len(account.segments) * 41


def test_the_bi_role_reads_views_and_cannot_write_or_reach_dagster(sim, warehouse, loaded, admin_url):
    assert run(loaded, "klaviyo_sync_stats", TODAY - dt.timedelta(days=3), TODAY).success
    login = f"bi_{uuid.uuid4().hex[:8]}"
    dagster_db = f"kp_dagster_{uuid.uuid4().hex[:12]}"  # private, like the one the CLI makes
    ensure_database(admin_url, dagster_db, private=True)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {login} LOGIN IN ROLE klaviyo_bi")
    db = warehouse.engine.url.database
    try:
        bi_url = db_url(admin_url, db).replace("postgres@", f"{login}@", 1)
        with psycopg.connect(bi_url, options=f"-csearch_path={warehouse.schema_name}") as conn:
            assert conn.execute("SELECT count(*) FROM klaviyo_segments_report").fetchone()[0] > 0
            assert conn.execute("SELECT count(*) FROM klaviyo_daily_kpis").fetchone()[0] > 0
            assert conn.execute("SELECT count(*) FROM klaviyo_flow_stats_daily").fetchone()[0] > 0
            for statement in (
                "INSERT INTO klaviyo_report_quota (account_id, day, quota) VALUES ('x', current_date, 1)",
                "UPDATE klaviyo_segments SET name = 'x'",
                "DELETE FROM klaviyo_flow_stats_daily",
                "CREATE TABLE klaviyo_bi_scratch (x int)",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.rollback()
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(db_url(admin_url, dagster_db).replace("postgres@", f"{login}@", 1)).close()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dagster_db}" WITH (FORCE)')
            admin.execute(f"DROP ROLE {login}")


def test_the_catchup_sensor_asks_for_missing_days_and_skips_while_the_quota_is_spent(sim, warehouse, loaded):
    from assets.partitions import daily_partitions
    from pipelines.sensors import klaviyo_stats_catchup_sensor

    resources = {
        "klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url, rate_time_scale=SCALE),
        "warehouse": warehouse,
    }
    context = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources=resources)
    [request] = klaviyo_stats_catchup_sensor(context).run_requests
    first = daily_partitions.get_first_partition_key()
    assert request.tags["dagster/asset_partition_range_start"] == first
    # The days the automation no longer re-reads (before its 7-day lookback).
    assert request.tags["dagster/asset_partition_range_end"] == str(TODAY - dt.timedelta(days=8))
    # Loaded now, days before the lookback are settled: nothing is left to ask for but the campaigns still
    # within their refresh period, which the automation reads.
    assert run(loaded, "klaviyo_sync_stats", first, TODAY - dt.timedelta(days=8)).success
    calls = len(report_calls(sim))
    done = klaviyo_stats_catchup_sensor(context)
    assert isinstance(done, dg.SkipReason) and "loaded and settled" in done.skip_message
    # A day read before it settled (too soon after it ended) is asked for again.
    old = TODAY - dt.timedelta(days=20)
    with warehouse.engine.begin() as conn:
        conn.execute(
            text("UPDATE klaviyo_report_coverage SET loaded_at = :at WHERE family = 'form' AND day = :d"),
            {"at": dt.datetime.combine(old, dt.time(12), UTC) + dt.timedelta(days=1), "d": old},
        )
    [again] = klaviyo_stats_catchup_sensor(context).run_requests
    assert again.tags["klaviyo/report_calls_planned"] == "1"
    assert again.tags["dagster/asset_partition_range_start"] == str(old)

    with warehouse.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO klaviyo_report_quota (account_id, day, calls, quota) VALUES (:a, :d, 225, 225)"
                " ON CONFLICT (account_id, day) DO UPDATE SET calls = 225"
            ),
            {"a": sim.account.account_id, "d": TODAY},
        )
    skipped = klaviyo_stats_catchup_sensor(context)
    assert isinstance(skipped, dg.SkipReason)
    assert "225/225 requests used" in skipped.skip_message and "wait for 00:00 UTC" in skipped.skip_message
    assert len(report_calls(sim)) == calls  # the sensor never spends report quota itself


def test_malformed_report_responses_are_refused_with_a_clear_error():
    from resources.reports import ReportFormatError, report_rows

    family, call = FAMILIES["form"], ReportCall("form", dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    at = dt.datetime(2026, 1, 3, tzinfo=UTC)
    good = {
        "attributes": {
            "date_times": ["2026-01-01T00:00:00-05:00", "2026-01-02T00:00:00-05:00"],
            "results": [
                {"groupings": {"form_id": "F1"}, "statistics": {"submits": [3, 4], "new_stat": [1, 2]}}
            ],
        }
    }
    read = report_rows(family, call, good, "acct", at, None, AccountCalendar("America/New_York"))
    rows = read.frame
    assert rows["day"].tolist() == [dt.date(2026, 1, 1), dt.date(2026, 1, 2)]  # the account's calendar days
    assert rows["submits"].tolist() == [3, 4] and rows["statistics"][1] == {"submits": 4, "new_stat": 2}
    assert read.rejected == []
    bad = [
        ({"attributes": {"results": "nope", "date_times": []}}, "results is not a list"),
        ({"attributes": {"results": []}}, "without data.attributes.date_times"),
        ({"attributes": {"date_times": ["soon"], "results": []}}, "unreadable date_times"),
        ("<html>", "no data.attributes"),
    ]
    for data, message in bad:
        with pytest.raises(ReportFormatError, match=message):
            report_rows(family, call, data, "acct", at, None)
