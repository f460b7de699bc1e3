"""Profiles and events: exact days, re-reads without duplicates, odd timestamps, NUL and unicode, crash and
rerun, newer profiles winning over older copies."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import text

from assets.partitions import daily_partitions
from assets.transform import transform_events, transform_profiles
from klaviyo_sim import Account
from resources.textsafe import unescape_json
from tests.test_pipeline import defs_for, mat_metadata, run, status

UTC = dt.UTC


def events_in_db(warehouse) -> dict[str, dict]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, datetime, metric_id, profile_id, event_properties FROM klaviyo_events")
        ).all()
    return {
        r.id: {
            "datetime": r.datetime,
            "metric_id": r.metric_id,
            "profile_id": r.profile_id,
            "props": unescape_json(r.event_properties),
        }
        for r in rows
    }


def sim_events(
    acct: Account, start: dt.datetime | None = None, end: dt.datetime | None = None
) -> dict[str, dict]:
    out = {}
    for i in range(acct.total_events):
        ts = acct.event_timestamp(i)
        if (start is None or ts >= start.timestamp()) and (end is None or ts < end.timestamp()):
            attrs, metric_id, profile_id = acct.event(i)
            out[acct.event_id(i)] = {
                "datetime": dt.datetime.fromtimestamp(ts, UTC),
                "metric_id": metric_id,
                "profile_id": profile_id,
                "props": attrs["event_properties"],
            }
    return out


def a_busy_day(acct: Account) -> dt.datetime:
    day = dt.datetime.fromtimestamp(acct.event_timestamp(acct.counts["events"] // 2), UTC)
    return day.replace(hour=0, minute=0, second=0)


def test_a_day_of_events_equals_the_simulators_exactly(sim, warehouse):
    day = a_busy_day(sim.account)
    result = run(defs_for(sim, warehouse), "klaviyo_sync_events", partition=day.strftime("%Y-%m-%d"))
    assert result.success
    want = sim_events(sim.account, day, day + dt.timedelta(days=1))
    got = events_in_db(warehouse)
    assert got == want and len(want) > 10
    # The window's bounds sit exactly on events now and then: none lost, none doubled (checked by equality).
    assert mat_metadata(result, "events")["records_rejected"] == 0


def test_reruns_and_overlapping_rereads_add_no_duplicates(sim, warehouse):
    defs = defs_for(sim, warehouse)
    day = a_busy_day(sim.account)
    key = day.strftime("%Y-%m-%d")
    assert run(defs, "klaviyo_sync_events", partition=key).success
    assert run(defs, "klaviyo_sync_events", partition=key).success
    before, after = (
        (day - dt.timedelta(days=1)).strftime("%Y-%m-%d"),
        (day + dt.timedelta(days=1)).strftime("%Y-%m-%d"),
    )
    again = run(defs, "klaviyo_sync_events", start=before, end=after)
    assert again.success
    with warehouse.engine.connect() as conn:
        total, distinct = conn.execute(text("SELECT count(*), count(DISTINCT id) FROM klaviyo_events")).one()
    want = sim_events(sim.account, day - dt.timedelta(days=1), day + dt.timedelta(days=2))
    assert total == distinct == len(want)
    meta = mat_metadata(again, "events")
    assert meta["rows_updated"] == 0 and meta["rows_skipped"] > 0


def test_future_dated_events_load_without_moving_the_watermark_past_now(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    began = dt.datetime.now(UTC)
    assert run(defs, "klaviyo_sync_events", start=first, end=today).success
    got = events_in_db(warehouse)
    assert set(got) == set(sim_events(sim.account))  # everything, future-dated included
    future = [e for e in got.values() if e["datetime"] > dt.datetime.now(UTC)]
    assert len(future) == sim.account.future_events
    mark = status(warehouse, "events").watermark
    assert began - dt.timedelta(seconds=5) <= mark <= dt.datetime.now(UTC)
    # The next incremental run still reads the trailing days (it does not skip past the future events).
    incr = run(defs, "klaviyo_sync_events", partition=today)
    assert incr.success
    meta = mat_metadata(incr, "events")
    assert dt.datetime.fromisoformat(meta["window_start"]) <= mark - dt.timedelta(days=2)


def test_odd_timestamps_parse_and_nul_and_unicode_survive(sim, warehouse):
    acct = sim.account
    shapes = [acct.event(i)[0]["datetime"] for i in range(4)]  # the simulator sends Klaviyo's several shapes
    assert shapes[0][10] == "T" and shapes[1][10] == " " and shapes[2].endswith("Z") and "." in shapes[3]
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs_for(sim, warehouse), "klaviyo_sync_events", start=first, end=today).success
    got = events_in_db(warehouse)
    nul = acct.event_id(13)
    assert got[nul]["props"]["Note"] == "nul\x00inside and ünïcödé 🎉"
    with warehouse.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT event_properties->>'Note' FROM klaviyo_events WHERE id = :i"), {"i": nul}
        ).scalar_one()
    assert raw == "nul\\u0000inside and ünïcödé 🎉"  # stored escaped, never dropped


def test_the_event_transform_handles_odd_records():
    records = [
        {
            "id": "a",
            "attributes": {
                "datetime": "2026-03-01 10:00:00.123456+00:00",
                "timestamp": 1,
                "event_properties": {"$value": "12.5"},
            },
        },
        {
            "id": "b",
            "attributes": {
                "datetime": None,
                "timestamp": 1772359200,
                "event_properties": None,
                "new_attr": 1,
            },
        },
        {"id": "c", "attributes": {"datetime": "not a date"}},
        {"attributes": {"datetime": "2026-03-01T10:00:00Z"}},
        {"id": "d", "attributes": {}},
    ]
    result = transform_events(records, "acct")
    assert list(result.frame["id"]) == ["a", "b"]
    assert result.frame.loc[0, "value"] == 12.5
    assert result.frame.loc[1, "datetime"] == dt.datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert result.frame.loc[1, "attributes_extra"] == {"new_attr": 1}
    assert sorted(r.id or "" for r in result.rejected) == ["", "c", "d"]


def test_the_event_transform_survives_malformed_relationships_and_keeps_unknown_attributes():
    when = "2026-03-01T10:00:00+00:00"
    records = [
        {
            "id": "e1",
            "attributes": {"datetime": when, "extra": "kept"},
            "relationships": ["not", "a", "dict"],
        },
        {
            "id": "e2",
            "attributes": {"datetime": when, "uuid": "u", "timestamp": True, "event_properties": [1]},
            "relationships": {
                "metric": "oops",
                "profile": {"data": ["x"]},
                "attributions": {"data": [{"id": "at1"}, "junk"]},
            },
        },
        {
            "id": "e3",
            "attributes": {"datetime": when, "uuid": "u3", "timestamp": 5, "event_properties": {}},
            "relationships": {"metric": {"data": {"id": "M1"}}, "profile": {"data": {"id": "P1"}}},
        },
    ]
    frame = transform_events(records, "acct").frame.set_index("id")
    assert frame.loc["e1", "attributes_extra"] == {"extra": "kept"}
    assert pd.isna(frame.loc["e1", "metric_id"]) and frame.loc["e1", "attribution_ids"] is None
    assert pd.isna(frame.loc["e2", "metric_id"]) and pd.isna(frame.loc["e2", "profile_id"])
    assert frame.loc["e2", "attribution_ids"] == ["at1", None]
    assert frame.loc["e2", "event_properties"] == {}  # not an object: the raw value is not a property map
    assert frame.loc["e2", "timestamp"] == 1772359200  # a boolean is no epoch: taken from the datetime
    assert (frame.loc["e3", "metric_id"], frame.loc["e3", "profile_id"]) == ("M1", "P1")
    assert frame.loc["e3", "timestamp"] == 5 and frame.loc["e3", "attributes_extra"] == {}


def test_a_run_cut_off_mid_window_then_rerun_equals_an_uninterrupted_run(make_sim, make_warehouse):
    sim = make_sim(Account(seed=7, events=30_000))  # 30 pages of 1000: three batches of 10,000
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    clean, cut = make_warehouse(), make_warehouse()
    assert run(defs_for(sim, clean), "klaviyo_sync_events", start=first, end=today).success

    defs = defs_for(sim, cut, max_attempts=1)
    sim.faults.operations = {"get_events"}
    sim.faults.queue(
        *[None] * 12, *["cut"] * 30
    )  # twelve pages land (two batches commit), then the line drops
    failed = run(defs, "klaviyo_sync_events", start=first, end=today)
    assert not failed.success
    with cut.engine.connect() as conn:
        partial = conn.execute(text("SELECT count(*) FROM klaviyo_events")).scalar_one()
    assert 0 < partial < sim.account.total_events
    assert status(cut, "events").watermark is None and status(cut, "events").status == "failed"
    sim.faults.script.clear()
    assert run(defs, "klaviyo_sync_events", start=first, end=today).success
    assert events_in_db(cut) == events_in_db(clean)


def test_profiles_updates_arrive_and_older_copies_never_win(sim, warehouse):
    acct = sim.account
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_profiles", start=first, end=today).success
    with warehouse.engine.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM klaviyo_profiles")).scalar_one()
            == acct.counts["profiles"]
        )
    newer = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(seconds=30)
    ids = acct.touch_profiles([5, 17], at=newer)
    incr = run(defs, "klaviyo_sync_profiles", partition=today)
    assert incr.success and mat_metadata(incr, "profiles")["rows_updated"] == 2

    def names():
        with warehouse.engine.connect() as conn:
            return dict(
                conn.execute(
                    text("SELECT id, first_name FROM klaviyo_profiles WHERE id = ANY(:i)"), {"i": ids}
                ).all()
            )

    assert names() == {ids[0]: "Edited 5", ids[1]: "Edited 17"}
    # Klaviyo now serves an older copy of profile 5 (e.g. a lagging replica): a full refresh must not regress it.
    acct.profile_overrides[5].updated = newer - dt.timedelta(days=3)
    acct.profile_overrides[5].first_name = "Older copy"
    refresh = run(
        defs,
        "klaviyo_sync_profiles",
        start=first,
        end=today,
        config={"ops": {"klaviyo__profiles": {"config": {"full_refresh": True}}}},
    )
    assert refresh.success
    assert names()[ids[0]] == "Edited 5"


def test_profiles_optional_subscriptions(sim, warehouse):
    defs = defs_for(sim, warehouse)
    config = {"ops": {"klaviyo__profiles": {"config": {"subscriptions": True}}}}
    first = daily_partitions.get_first_partition_key()
    assert run(
        defs,
        "klaviyo_sync_profiles",
        start=first,
        end=daily_partitions.get_last_partition_key(),
        config=config,
    ).success
    with warehouse.engine.connect() as conn:
        subs = conn.execute(text("SELECT subscriptions FROM klaviyo_profiles LIMIT 1")).scalar_one()
        predictive = conn.execute(
            text("SELECT count(*) FROM klaviyo_profiles WHERE predictive_analytics IS NOT NULL")
        ).scalar_one()
    assert subs["email"]["marketing"]["method"] == "FORM"
    assert predictive == 0
    calls = [c.query for c in sim.calls("get_profiles")]
    assert all("predictive_analytics" not in q for q in calls)


def test_events_for_chosen_metrics_by_name(sim, warehouse):
    defs = defs_for(sim, warehouse)
    first, today = daily_partitions.get_first_partition_key(), daily_partitions.get_last_partition_key()
    assert run(defs, "klaviyo_sync_metrics", partition=first).success
    config = {"ops": {"klaviyo__events": {"config": {"metric_names": ["Placed Order", "Opened Email"]}}}}
    assert run(defs, "klaviyo_sync_events", start=first, end=today, config=config).success
    acct = sim.account
    wanted = {m.id for m in acct.metrics if m.attributes["name"] in ("Placed Order", "Opened Email")}
    got = events_in_db(warehouse)
    assert {e["metric_id"] for e in got.values()} == wanted
    assert set(got) == {
        acct.event_id(i) for i in range(acct.total_events) if acct.event_metric_id(i) in wanted
    }
    assert sim.client_errors == []
    bad = {"ops": {"klaviyo__events": {"config": {"metric_names": ["No Such Metric"]}}}}
    failed = run(defs, "klaviyo_sync_events", partition=today, config=bad)
    assert not failed.success
    errors = [e.event_specific_data.error.message for e in failed.all_events if e.is_step_failure]
    assert any("no metric named ['No Such Metric']" in m for m in errors)


def test_profile_datetimes_absent_odd_or_unreadable():
    def profile(pid, **attrs):
        return {"id": pid, "attributes": {"email": f"{pid}@example.com", **attrs}}

    records = [
        profile(
            "p1", created="2026-03-01T10:00:00Z", updated="2026-03-02 10:00:00.5+00:00", last_event_date=None
        ),
        profile("p2", created=1772359200, updated="2026-03-02T10:00:00+00:00"),  # epoch seconds
        profile("p3", created="2026-03-01T10:00:00Z", updated="yesterday"),
    ]
    result = transform_profiles(records, "acct")
    frame = result.frame.set_index("id")
    assert list(frame.index) == ["p1", "p2"]
    assert pd.isna(frame.loc["p1", "last_event_date"]) and pd.isna(frame.loc["p2", "last_event_date"])
    assert frame.loc["p1", "updated_date"] == pd.Timestamp("2026-03-02T10:00:00.5Z")
    assert frame.loc["p2", "created_date"] == pd.Timestamp("2026-03-01T10:00:00Z")
    assert [(r.id, r.reason.split(":")[0]) for r in result.rejected] == [("p3", "updated_date")]
