"""What a real Klaviyo account does that a permissive one does not: least-privilege keys, paged reports, an
account time zone that is not UTC, timeframes that may not end in the future, opt-in profile columns, campaign
sends over several days, events imported late, refused metric filters, pinned revisions."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from assets.access import check_access
from assets.partitions import daily_partitions
from klaviyo_sim import Account
from klaviyo_sim.reports import message_counts, message_statistics, segment_day
from pipelines.schedules import klaviyo_events_reread_schedule
from resources.calendar import AccountCalendar
from resources.catalogue import ENDPOINTS
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, UnsupportedRevision
from resources.klaviyo_api import SUPPORTED_REVISIONS
from resources.ratelimit import L, M
from resources.reports import (
    FAMILIES,
    ReportCall,
    plan_campaign_calls,
    report_rows,
    request_attributes,
)
from tests.conftest import TEST_KEY
from tests.test_pipeline import defs_for, run
from tests.test_stats import defs_for as stats_defs_for
from tests.test_stats import load_entities, report_calls, table
from tests.test_stats import run as stats_run
from tests.test_volume import events_in_db

UTC = dt.UTC
EVERY_SCOPE = {
    "accounts:read", "campaigns:read", "events:read", "flows:read", "forms:read", "lists:read",
    "metrics:read", "profiles:read", "segments:read", "tags:read", "templates:read", "catalogs:read",
    "coupons:read", "coupon-codes:read",
}  # fmt: skip
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def failures(result) -> list[str]:
    return [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]


# -- 1. key scopes -------------------------------------------------------------------------------------------
def test_check_lists_every_scope_and_names_the_missing_one(make_sim, client_for):
    sim = make_sim(key_scopes={TEST_KEY: EVERY_SCOPE - {"accounts:read"}})
    results = check_access(client_for(sim))
    by_asset = {(r.requirement.asset, r.requirement.endpoint): r for r in results}
    accounts = by_asset[("(every asset)", "GET /api/accounts")]
    assert not accounts.ok and accounts.requirement.scope == "accounts:read" and "403" in accounts.detail
    others = [r for r in results if r is not accounts]
    assert others and all(r.ok for r in others), [(r.requirement.asset, r.detail) for r in others]
    assert {r.requirement.scope for r in results} == EVERY_SCOPE
    stats = by_asset[("klaviyo/flow_stats_daily", "POST /api/flow-series-reports")]
    assert stats.requirement.scope == "flows:read" and not report_calls(sim)  # no report quota spent


def test_the_check_command_exits_non_zero_for_a_missing_scope(make_sim):
    sim = make_sim(key_scopes={TEST_KEY: EVERY_SCOPE - {"events:read"}})
    env = {**os.environ, "KLAVIYO_API_KEY": TEST_KEY, "KLAVIYO_BASE_URL": sim.url}
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1, done.stdout + done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("klaviyo/events"))
    assert "events:read" in line and "missing" in line
    assert "missing or refused events:read" in done.stdout
    assert TEST_KEY not in done.stdout + done.stderr
    full = make_sim()
    env["KLAVIYO_BASE_URL"] = full.url
    ok = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert ok.returncode == 0 and "every scope the assets need" in ok.stdout


@pytest.mark.parametrize("missing", ["accounts:read", "flows:read"])
def test_a_refused_key_fails_at_once_naming_the_scope_and_is_never_retried(make_sim, warehouse, missing):
    sim = make_sim(key_scopes={TEST_KEY: EVERY_SCOPE - {missing}})
    result = run(
        defs_for(sim, warehouse), "klaviyo_sync_flows", partition=daily_partitions.get_first_partition_key()
    )
    assert not result.success
    messages = failures(result)
    assert len(messages) == 1 and f"lacks the scope {missing}" in messages[0]  # one attempt: no step retry
    refused = [c for c in sim.calls() if c.status == 403]
    assert len(refused) == 1  # and no retry by the client either
    assert TEST_KEY not in messages[0]


def test_a_wrong_key_fails_at_once_with_a_clear_message(make_sim, warehouse):
    sim = make_sim(api_keys={"pk_" + "z" * 34})
    result = run(
        defs_for(sim, warehouse), "klaviyo_sync_flows", partition=daily_partitions.get_first_partition_key()
    )
    messages = failures(result)
    assert len(messages) == 1 and "check KLAVIYO_API_KEY" in messages[0]
    assert len(sim.calls()) == 1


# -- 2. report pages ------------------------------------------------------------------------------------------
def test_every_page_of_a_paged_report_lands(make_sim, warehouse, client_for):
    sim = make_sim(report_page_size=5)
    load_entities(client_for(sim), warehouse)
    today = dt.datetime.now(UTC).date()
    start, end = today - dt.timedelta(days=45), today - dt.timedelta(days=1)
    assert stats_run(stats_defs_for(sim, warehouse), "klaviyo_sync_stats", start, end).success
    flows = table(warehouse, "klaviyo_flow_stats_daily", "flow_id, day")
    assert len(flows) == len(sim.account.flows) * 45
    pages = [c for c in report_calls(sim) if "flow-series" in c.path]
    assert len(pages) == -(-len(sim.account.flows) // 5)  # every page, once
    assert sum("page_cursor" in c.query for c in pages) == len(pages) - 1
    with warehouse.engine.connect() as conn:
        requests = conn.execute(
            text("SELECT requests FROM klaviyo_report_calls WHERE report = 'flow-series'")
        ).scalar_one()
    assert requests == len(pages)  # each page is a report request of the quota


def test_a_call_whose_pages_do_not_all_land_covers_no_day(make_sim, warehouse, client_for):
    sim = make_sim(report_page_size=5)
    load_entities(client_for(sim), warehouse)
    today = dt.datetime.now(UTC).date()
    config = {"ops": {"klaviyo_stats": {"config": {"daily_quota": 2}}}}
    selection = [dg.AssetKey(["klaviyo", "flow_stats_daily"])]
    result = stats_run(
        stats_defs_for(sim, warehouse), "klaviyo_sync_stats", today - dt.timedelta(days=10), today - dt.timedelta(days=1),
        config=config, selection=selection,
    )  # fmt: skip
    assert result.success
    assert len(report_calls(sim)) == 2  # two of five pages: the quota ran out
    assert table(warehouse, "klaviyo_flow_stats_daily", "1") == []
    with warehouse.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM klaviyo_report_coverage")).scalar_one() == 0
    assert dg.AssetKey(["klaviyo", "flow_stats_daily"]) not in {
        e.asset_key for e in result.get_asset_materialization_events()
    }


# -- 3. the account's time zone ------------------------------------------------------------------------------
@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_daily_statistics_are_the_accounts_local_days(make_sim, warehouse, client_for, zone):
    sim = make_sim(Account(seed=7, timezone=zone))
    load_entities(client_for(sim), warehouse)
    calendar = AccountCalendar(zone)
    today = calendar.today(dt.datetime.now(UTC))
    # 2026-11-01 ends daylight saving time in New York: a 25-hour day, still one row per flow.
    start, end = dt.date(2026, 10, 28), dt.date(2026, 11, 4)
    assert start >= today - dt.timedelta(days=110), "the simulated history must reach the DST change"
    assert stats_run(stats_defs_for(sim, warehouse), "klaviyo_sync_stats", start, end).success
    account = sim.account
    days = [start + dt.timedelta(days=k) for k in range((end - start).days + 1)]
    flows = table(warehouse, "klaviyo_flow_stats_daily", "flow_id, day")
    assert sorted({r["day"] for r in flows}) == days
    stats = FAMILIES["flow"].statistics("2026-07-15")
    for row in flows:
        expected = message_statistics(message_counts(account, "flow", row["flow_id"], row["day"]), stats)
        assert row["statistics"] == expected, (row["flow_id"], row["day"])
    for row in table(warehouse, "klaviyo_segment_stats_daily", "segment_id, day"):
        assert row["total_members"] == segment_day(account, row["segment_id"], row["day"])["total_members"]
    with warehouse.engine.connect() as conn:
        quota_days = conn.execute(text("SELECT day FROM klaviyo_report_quota")).scalars().all()
    assert quota_days == [today]  # the quota's day is the account's


def test_the_account_calendar_counts_days_in_its_zone():
    ny = AccountCalendar("America/New_York")
    late_evening = dt.datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # 22:00 on Dec 1 in New York
    assert ny.today(late_evening) == dt.date(2026, 12, 1)
    assert ny.end_of(dt.date(2026, 11, 1)) - ny.start_of(dt.date(2026, 11, 1)) == dt.timedelta(hours=25)
    assert ny.day_of("2026-11-01T00:00:00-04:00") == dt.date(2026, 11, 1)
    assert ny.day_of("2026-11-02T05:00:00+00:00") == dt.date(2026, 11, 2)  # the same instant in UTC
    assert ny.day_of("2026-11-02T00:00:00") == dt.date(2026, 11, 2)  # naive: the account's wall clock
    kolkata = AccountCalendar("Asia/Kolkata")
    assert kolkata.day_of("2026-11-01T18:30:00+00:00") == dt.date(2026, 11, 2)
    call = ReportCall("flow", dt.date(2026, 11, 1), dt.date(2026, 11, 1))
    attrs = request_attributes(FAMILIES["flow"], call, "2026-07-15", "M", ny, late_evening)
    assert attrs["timeframe"] == {"start": "2026-11-01T00:00:00-04:00", "end": "2026-11-01T23:59:59-05:00"}


# -- 4. timeframes never end in the future -------------------------------------------------------------------
def test_a_timeframe_that_includes_today_ends_before_now():
    now = dt.datetime(2026, 12, 1, 15, 30, 7, tzinfo=UTC)
    call = ReportCall("form", dt.date(2026, 11, 25), dt.date(2026, 12, 1))
    attrs = request_attributes(FAMILIES["form"], call, "2026-07-15", None, AccountCalendar(), now)
    assert attrs["timeframe"] == {"start": "2026-11-25T00:00:00+00:00", "end": "2026-12-01T15:30:02+00:00"}


def test_a_run_of_today_is_accepted_by_a_server_that_refuses_future_ends(make_sim, warehouse, client_for):
    sim = make_sim(refuse_future_timeframes=True)
    load_entities(client_for(sim), warehouse)
    today = dt.datetime.now(UTC).date()
    assert stats_run(stats_defs_for(sim, warehouse), "klaviyo_sync_stats", today, today).success
    assert sim.client_errors == []


# -- 5. opt-in profile columns -------------------------------------------------------------------------------
def test_a_default_run_keeps_what_an_opt_in_run_loaded(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, last = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    opt_in = {"ops": {"klaviyo__profiles": {"config": {"subscriptions": True, "predictive_analytics": True}}}}
    assert run(defs, "klaviyo_sync_profiles", start=first, end=last, config=opt_in).success
    sim.account.touch_profiles(list(range(0, 40)))  # updated: the default run rewrites these rows
    default = {"ops": {"klaviyo__profiles": {"config": {"full_refresh": True}}}}
    assert run(defs, "klaviyo_sync_profiles", start=first, end=last, config=default).success
    with warehouse.engine.connect() as conn:
        counts = conn.execute(
            text(
                """SELECT count(*) AS n, count(subscriptions) AS subs, count(predictive_analytics) AS pred,
                          count(*) FILTER (WHERE updated_date >= now() - interval '1 hour') AS touched
                   FROM klaviyo_profiles"""
            )
        ).one()
    assert counts.touched >= 40
    assert counts.subs == counts.n and counts.pred == counts.n


# -- 6. campaign sends over several days ---------------------------------------------------------------------
def test_a_campaigns_figures_always_cover_its_whole_send(make_sim, warehouse, client_for):
    sim = make_sim()
    load_entities(client_for(sim), warehouse)
    account = sim.account
    today = dt.datetime.now(UTC).date()
    spread = [c for c in account.campaigns if len(account.campaign_send_days(c.id)) > 1]
    recent = [c for c in spread if account.campaign_send_days(c.id)[0] >= today - dt.timedelta(days=25)]
    assert recent, "the simulated account must have a multi-day send in the last 25 days"
    defs = stats_defs_for(sim, warehouse)
    assert stats_run(defs, "klaviyo_sync_stats", today - dt.timedelta(days=40), today).success
    # A run whose lookback starts inside a send (its second day) must not replace the whole figures.
    campaign = recent[0]
    second_day = account.campaign_send_days(campaign.id)[1]
    config = {"ops": {"klaviyo_stats": {"config": {"lookback_days": 0}}}}
    assert stats_run(defs, "klaviyo_sync_stats", second_day, second_day, config=config).success
    rows = {r["campaign_id"]: r for r in table(warehouse, "klaviyo_campaign_stats", "campaign_id")}
    stats = FAMILIES["campaign"].statistics("2026-07-15")
    for c in spread:
        if c.id in rows:
            assert rows[c.id]["statistics"] == message_statistics(account.campaign_whole_send(c.id), stats), (
                c.id
            )
    assert rows[campaign.id]["timeframe_start"] <= account.campaign_send_days(campaign.id)[0]


def test_campaign_calls_span_whole_sends():
    today = dt.date(2026, 12, 1)
    calls = plan_campaign_calls([dt.date(2025, 1, 10), dt.date(2026, 1, 7), dt.date(2026, 11, 20)], today)
    assert [(c.start, c.end, c.days) for c in calls] == [
        (dt.date(2025, 1, 10), dt.date(2026, 1, 9), [dt.date(2025, 1, 10)]),  # 2026-01-07 is too near its end
        (dt.date(2026, 1, 7), today, [dt.date(2026, 1, 7), dt.date(2026, 11, 20)]),
    ]


# -- 7. events that arrive late ------------------------------------------------------------------------------
def test_the_deep_reread_brings_events_imported_late(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_events", start=first, end=today).success
    late = sim.account.import_events(5, days_ago=12)
    assert run(defs, "klaviyo_sync_events", partition=today).success
    assert not set(late) & set(events_in_db(warehouse))  # 12 days back: beyond the incremental re-read
    [schedule_run] = klaviyo_events_reread_schedule(
        dg.build_schedule_context(scheduled_execution_time=dt.datetime.now(UTC))
    )
    assert schedule_run.partition_key == today
    assert schedule_run.run_config["ops"]["klaviyo__events"]["config"]["reread_days"] == 30
    assert run(defs, "klaviyo_sync_events", partition=today, config=schedule_run.run_config).success
    assert set(late) <= set(events_in_db(warehouse))


# -- 8. smaller items ----------------------------------------------------------------------------------------
def test_predictive_analytics_requests_spend_the_m_tier(make_sim, warehouse):
    assert ENDPOINTS["profiles"].tiers_for(["predictive_analytics"]) == [
        ("profiles", L),
        ("profiles:predictive_analytics", M),
    ]
    sim = make_sim(Account(seed=7, profiles=3000), rate_limits=True, time_scale=0.05)
    client = KlaviyoClient(TEST_KEY, base_url=sim.url, rate_time_scale=0.05, backoff_base=0.01)
    pages = list(client.list_window("profiles", additional_fields=["predictive_analytics"], page_size=100))
    client.close()
    assert sum(len(p.records) for p in pages) == 3000
    assert [c for c in sim.calls("get_profiles") if c.status == 429] == []


def test_a_malformed_report_result_is_rejected_and_the_others_load():
    family, call = FAMILIES["flow"], ReportCall("flow", dt.date(2026, 1, 1), dt.date(2026, 1, 2))
    good = {"flow_id": "F1", "flow_message_id": "M1", "send_channel": "email"}
    data = {
        "attributes": {
            "date_times": ["2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00"],
            "results": [
                {"groupings": good, "statistics": {"opens": [1, 2]}},
                {"groupings": {**good, "flow_id": "F2"}, "statistics": {"opens": [1]}},  # not aligned
                {"groupings": {"flow_id": "F3"}, "statistics": {"opens": [1, 2]}},  # no message id
                "garbage",
            ],
        }
    }
    read = report_rows(family, call, data, "acct", dt.datetime(2026, 1, 3, tzinfo=UTC), "M")
    assert read.frame["flow_id"].tolist() == ["F1", "F1"] and len(read.rejected) == 3
    assert "does not align" in read.rejected[0] and "flow_message_id" in read.rejected[1]


def test_a_malformed_report_result_fails_the_check_loudly(make_sim, warehouse, client_for):
    sim = make_sim()
    load_entities(client_for(sim), warehouse)
    sim.faults.operations = {"query_form_series"}
    sim.faults.queue("badrow")
    today = dt.datetime.now(UTC).date()
    result = stats_run(
        stats_defs_for(sim, warehouse), "klaviyo_sync_stats", today - dt.timedelta(days=5), today
    )
    assert result.success  # the step goes on
    checks = {
        (e.event_specific_data.asset_key.path[-1], e.event_specific_data.check_name): e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    rejected = checks[("form_stats_daily", "no_rejected_results")]
    assert not rejected.passed and rejected.metadata["results_rejected"].value == 1
    assert checks[("flow_stats_daily", "no_rejected_results")].passed
    forms = pd.DataFrame(table(warehouse, "klaviyo_form_stats_daily", "form_id, day"))
    assert forms["form_id"].nunique() == len(sim.account.forms) - 1  # the others loaded
    with warehouse.engine.connect() as conn:
        covered = conn.execute(
            text("SELECT count(*) FROM klaviyo_report_coverage WHERE family = 'form'")
        ).scalar_one()
    assert covered == 0  # its days are read again by the next run


def test_a_refused_metric_filter_names_the_metric_and_the_others_load(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    placed = next(m.id for m in sim.account.metrics if m.attributes["name"] == "Placed Order")
    custom = sim.account.custom_metric_id
    config = {"ops": {"klaviyo__events": {"config": {"metric_ids": [custom, placed]}}}}
    result = run(defs, "klaviyo_sync_events", start=first, end=today, config=config)
    assert not result.success
    messages = failures(result)
    assert len(messages) == 1 and custom in messages[0] and "refused the metric_id filter" in messages[0]
    got = events_in_db(warehouse)
    acct = sim.account
    assert set(got) == {
        acct.event_id(i) for i in range(acct.total_events) if acct.event_metric_id(i) == placed
    }


def test_an_unsupported_revision_is_refused_at_start(monkeypatch):
    with pytest.raises(UnsupportedRevision, match="supported: " + ", ".join(SUPPORTED_REVISIONS)):
        KlaviyoClient(TEST_KEY, revision="2024-10-15")
    from resources import settings

    monkeypatch.setenv("KLAVIYO_REVISION", "2025-01-15")
    with pytest.raises(UnsupportedRevision):
        settings.revision()


def test_absent_relationship_data_is_coped_with(make_sim, warehouse, client_for):
    sim = make_sim(Account(seed=7, omit_relationship_data=True))
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_events", start=first, end=today).success
    assert run(defs, "klaviyo_sync_campaigns", start=first, end=today).success
    with warehouse.engine.connect() as conn:
        no_metric = conn.execute(
            text("SELECT count(*) FROM klaviyo_events WHERE metric_id IS NULL")
        ).scalar_one()
        templates = conn.execute(
            text("SELECT count(*), count(template_id) FROM klaviyo_campaign_messages")
        ).one()
    assert no_metric == 0  # the events listing includes the metric, so its linkage is always there
    assert templates[0] == len(sim.account.campaign_messages) and 0 < templates[1] < templates[0]


def test_api_key_errors_are_not_retried_by_the_client(make_sim):
    sim = make_sim(key_scopes={TEST_KEY: {"flows:read"}})
    client = KlaviyoClient(TEST_KEY, base_url=sim.url, backoff_base=0.01)
    with pytest.raises(KlaviyoApiError) as info:
        client.account()
    assert info.value.status == 403 and info.value.scope == "accounts:read"
    assert len(sim.calls()) == 1
    client.close()
