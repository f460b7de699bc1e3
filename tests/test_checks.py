"""Every asset check can fail: each is run on a warehouse where it passes, then on one with the fault it is
there to catch (real Postgres, the checks invoked directly with the warehouse resource)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import text

from pipelines import checks
from resources.warehouse import WarehouseError

UTC = dt.UTC
NOW = dt.datetime.now(UTC).replace(microsecond=0)
CHECKS = {(key.asset_key.path[-1], key.name): key for key in checks.CHECKS}


def evaluate(warehouse, asset: str, name: str):
    return checks.evaluate(warehouse, CHECKS[(asset, name)])


def sql(warehouse, statement: str, **params) -> None:
    with warehouse.engine.begin() as conn:
        conn.execute(text(statement), params)


def events_partition(warehouse) -> None:
    with warehouse.transaction() as conn:
        warehouse.ensure_month_partitions(conn, "klaviyo_events", [(NOW.year, NOW.month)])


def run_row(
    warehouse, entity: str, *, status="success", read=3, rejected=0, landed=3, watermark=NOW, minutes=0
):
    sql(
        warehouse,
        """INSERT INTO klaviyo_sync_runs (account_id, entity, run_id, status, started_at, finished_at,
             records_read, records_rejected, rows_inserted, watermark)
           VALUES ('A', :e, :r, :s, :t, :t, :read, :rej, :landed, :w)""",
        e=entity, r=f"run-{minutes}", s=status, t=NOW + dt.timedelta(minutes=minutes), read=read,
        rej=rejected, landed=landed, w=watermark,
    )  # fmt: skip


def test_the_catalogue_gives_each_entity_only_checks_that_can_fail():
    names = {asset: set() for asset, _ in CHECKS}
    for asset, name in CHECKS:
        names[asset].add(name)
    # The primary key makes (account_id, id) unique everywhere but events, whose key adds the datetime.
    assert [a for a, n in names.items() if "unique_ids" in n] == ["events"]
    assert "required_columns" not in names["tags"]  # tags have no nullable column a row must fill
    assert {"known_references", "no_future_updates"} <= names["campaigns"]
    assert "no_future_updates" not in names["events"]  # events may be dated ahead (scheduled sends)


def test_events_ids_unique(warehouse):
    events_partition(warehouse)
    sql(warehouse, "INSERT INTO klaviyo_metrics (id, account_id, updated_date) VALUES ('M', 'A', now())")
    insert = "INSERT INTO klaviyo_events (id, account_id, datetime, metric_id) VALUES (:i, 'A', :d, 'M')"
    sql(warehouse, insert, i="E1", d=NOW)
    assert evaluate(warehouse, "events", "unique_ids").passed
    sql(warehouse, insert, i="E1", d=NOW - dt.timedelta(seconds=5))  # the key allows it; the check does not
    result = evaluate(warehouse, "events", "unique_ids")
    assert not result.passed and result.metadata["repeated_ids"].value == 1


def test_required_columns(warehouse):
    sql(warehouse, "INSERT INTO klaviyo_flows (id, account_id, updated_date) VALUES ('F1', 'A', now())")
    assert evaluate(warehouse, "flows", "required_columns").passed
    sql(warehouse, "INSERT INTO klaviyo_flows (id, account_id) VALUES ('F2', 'A')")
    assert not evaluate(warehouse, "flows", "required_columns").passed
    sql(warehouse, "UPDATE klaviyo_flows SET deleted_at = now() WHERE id = 'F2'")  # only live rows count
    assert evaluate(warehouse, "flows", "required_columns").passed
    events_partition(warehouse)
    sql(warehouse, "INSERT INTO klaviyo_events (id, account_id, datetime) VALUES ('E', 'A', :d)", d=NOW)
    assert not evaluate(warehouse, "events", "required_columns").passed


def test_loaded_what_the_api_reported(warehouse):
    assert not evaluate(warehouse, "lists", "loaded_what_the_api_reported").passed  # never ran
    run_row(warehouse, "lists")
    assert evaluate(warehouse, "lists", "loaded_what_the_api_reported").passed
    run_row(warehouse, "lists", rejected=1, landed=2, minutes=1)
    assert not evaluate(warehouse, "lists", "loaded_what_the_api_reported").passed
    run_row(warehouse, "lists", landed=2, minutes=2)  # a record read but not landed
    assert not evaluate(warehouse, "lists", "loaded_what_the_api_reported").passed


def test_known_references(warehouse):
    events_partition(warehouse)
    sql(warehouse, "INSERT INTO klaviyo_metrics (id, account_id, updated_date) VALUES ('M', 'A', now())")
    sql(
        warehouse,
        "INSERT INTO klaviyo_events (id, account_id, datetime, metric_id) VALUES ('E1', 'A', :d, 'M')",
        d=NOW,
    )
    assert evaluate(warehouse, "events", "known_references").passed
    sql(
        warehouse,
        "INSERT INTO klaviyo_events (id, account_id, datetime, metric_id) VALUES ('E2', 'A', :d, 'X')",
        d=NOW,
    )
    result = evaluate(warehouse, "events", "known_references")
    assert not result.passed and result.metadata["unknown_ids"].value == {"klaviyo_events.metric_id": ["X"]}

    sql(warehouse, "INSERT INTO klaviyo_campaigns (id, account_id, updated_date) VALUES ('C1', 'A', now())")
    message = "INSERT INTO klaviyo_campaign_messages (id, account_id, campaign_id) VALUES (:i, 'A', :c)"
    sql(warehouse, message, i="M1", c="C1")
    assert evaluate(warehouse, "campaigns", "known_references").passed
    sql(warehouse, message, i="M2", c="C-gone")
    assert not evaluate(warehouse, "campaigns", "known_references").passed


def test_no_future_updates(warehouse):
    insert = "INSERT INTO klaviyo_segments (id, account_id, updated_date) VALUES (:i, 'A', :u)"
    sql(warehouse, insert, i="S1", u=NOW + dt.timedelta(hours=2))  # a clock a little ahead is fine
    assert evaluate(warehouse, "segments", "no_future_updates").passed
    sql(warehouse, insert, i="S2", u=NOW + dt.timedelta(days=3))
    result = evaluate(warehouse, "segments", "no_future_updates")
    assert not result.passed and result.metadata["ids"].value == ["S2"]


def test_the_watermark_never_moves_back(warehouse):
    run_row(warehouse, "forms", watermark=NOW - dt.timedelta(hours=2))
    run_row(warehouse, "forms", watermark=NOW, minutes=1)
    assert evaluate(warehouse, "forms", "watermark_never_moves_back").passed
    run_row(warehouse, "forms", watermark=NOW - dt.timedelta(hours=1), minutes=2)
    assert not evaluate(warehouse, "forms", "watermark_never_moves_back").passed


def flow_stat(warehouse, flow: str, day: dt.date, **figures) -> None:
    columns = ", ".join(
        ["account_id", "flow_id", "flow_message_id", "send_channel", "day", "fetched_at", *figures]
    )
    values = ", ".join([":a", ":f", "'MSG'", "'email'", ":d", "now()", *(f":{k}" for k in figures)])
    sql(
        warehouse,
        f"INSERT INTO klaviyo_flow_stats_daily ({columns}) VALUES ({values})",
        a="A",
        f=flow,
        d=day,
        **figures,
    )


def test_statistics_rates_counts_and_entities(warehouse):
    sql(warehouse, "INSERT INTO klaviyo_flows (id, account_id, updated_date) VALUES ('F1', 'A', now())")
    flow_stat(warehouse, "F1", NOW.date(), open_rate=0.5, recipients=10)
    for name in ("rates_within_0_1", "counts_non_negative", "known_entities"):
        assert evaluate(warehouse, "flow_stats_daily", name).passed, name
    flow_stat(warehouse, "F1", NOW.date() - dt.timedelta(days=1), open_rate=1.5)
    assert not evaluate(warehouse, "flow_stats_daily", "rates_within_0_1").passed
    flow_stat(warehouse, "F1", NOW.date() - dt.timedelta(days=2), recipients=-1)
    assert not evaluate(warehouse, "flow_stats_daily", "counts_non_negative").passed
    flow_stat(warehouse, "F9", NOW.date())
    assert not evaluate(warehouse, "flow_stats_daily", "known_entities").passed


def test_no_missing_days(warehouse):
    insert = "INSERT INTO klaviyo_report_coverage (account_id, family, day, loaded_at) VALUES ('A', 'form', :d, now())"
    for k in (0, 1):
        sql(warehouse, insert, d=NOW.date() - dt.timedelta(days=k))
    assert evaluate(warehouse, "form_stats_daily", "no_missing_days").passed
    sql(warehouse, insert, d=NOW.date() - dt.timedelta(days=5))
    result = evaluate(warehouse, "form_stats_daily", "no_missing_days")
    assert not result.passed and result.metadata["missing_days"].value == 3


def report_call(warehouse, report: str, run: str, rejected: int = 0, start: dt.date | None = None) -> None:
    sql(
        warehouse,
        """INSERT INTO klaviyo_report_calls (account_id, report, timeframe_start, timeframe_end, status, rows_rejected,
             run_id, called_at) VALUES ('A', :r, :s, :e, 'ok', :rej, :run, now())""",
        r=report, s=start or NOW.date() - dt.timedelta(days=30), e=NOW.date(), rej=rejected, run=run,
    )  # fmt: skip


def test_sent_campaigns_have_figures(warehouse):
    report_call(warehouse, "campaign-values", "r1")
    campaign = "INSERT INTO klaviyo_campaigns (id, account_id, status, send_time, updated_date) VALUES (:i, 'A', :s, :t, now())"
    sql(warehouse, campaign, i="C1", s="Sent", t=NOW - dt.timedelta(days=10))
    sql(
        warehouse,
        """INSERT INTO klaviyo_campaign_stats (account_id, campaign_id, campaign_message_id, send_channel,
             timeframe_start, timeframe_end, fetched_at) VALUES ('A', 'C1', 'M1', 'email', :s, :e, now())""",
        s=NOW.date() - dt.timedelta(days=10), e=NOW.date(),
    )  # fmt: skip
    sql(warehouse, campaign, i="C2", s="Draft", t=NOW - dt.timedelta(days=5))  # never sent: no figures due
    assert evaluate(warehouse, "campaign_stats", "sent_campaigns_have_figures").passed
    sql(warehouse, campaign, i="C3", s="Sent", t=NOW - dt.timedelta(days=4))
    result = evaluate(warehouse, "campaign_stats", "sent_campaigns_have_figures")
    assert not result.passed and result.metadata["campaigns_without_figures"].value == ["C3"]


def test_no_rejected_results(warehouse):
    report_call(warehouse, "segment-series", "r1", rejected=2)
    report_call(warehouse, "segment-series", "r2")
    assert evaluate(warehouse, "segment_stats_daily", "no_rejected_results").passed  # the latest run is clean
    report_call(warehouse, "segment-series", "r3", rejected=1)
    assert not evaluate(warehouse, "segment_stats_daily", "no_rejected_results").passed


def test_checks_never_run_migrations(make_warehouse, test_database_url):
    from resources.warehouse import Warehouse

    bare = make_warehouse()
    with bare.engine.begin() as conn:
        conn.execute(text("DELETE FROM schema_migrations WHERE version = '011'"))
    fresh = Warehouse(url=bare.url, schema_name=bare.schema_name)
    with pytest.raises(WarehouseError, match="lacks migrations 011_account_days.sql"):
        evaluate(fresh, "flows", "loaded_what_the_api_reported")
    fresh.dispose()
