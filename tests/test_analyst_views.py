"""The analyst views (sql/views/040-060) on known rows loaded through the warehouse layer: every figure is
computed here from the rows as loaded, independently of the views' SQL, and compared exactly; the views are
assets with column lineage, every column is commented, and the BI role reads them."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from assets.bi_views import VIEWS, klaviyo_bi_views
from resources.warehouse import queries as q
from resources.warehouse import status as sync_status

UTC = dt.UTC
ACCOUNT = "Acc001"
K = lambda *path: dg.AssetKey(["klaviyo", *path])  # noqa: E731
NEW_VIEWS = {
    "klaviyo_flow_step_daily",
    "klaviyo_flow_step_performance",
    "klaviyo_segment_membership_daily",
    "klaviyo_campaign_audience_members",
    "klaviyo_campaign_audience_size",
}
EDITED = dt.datetime(2026, 5, 1, tzinfo=UTC)


def load(warehouse, table: str, rows: list[dict], key: tuple[str, ...], guard: str | None = None) -> None:
    """Upsert rows (the account added) with the warehouse's own merge."""
    frame = pd.DataFrame([{"account_id": ACCOUNT, **row} for row in rows], dtype=object)  # ints stay ints
    with warehouse.transaction() as conn:
        warehouse.upsert_frame(conn, table, frame, key=key, guard=guard)


def select(warehouse, sql: str, **params) -> list[dict]:
    with warehouse.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(sql), params)]


# -- flow steps ------------------------------------------------------------------------------------------------
STAT_COLUMNS = ("flow_message_id", "send_channel", "day", "recipients", "delivered", "opens_unique",
                "clicks_unique", "conversion_uniques", "conversion_value")  # fmt: skip
STATS = [  # in STAT_COLUMNS' order; conversion_value is the view's revenue
    ("M1", "email", dt.date(2026, 4, 1), 100, 98, 40, 10, 4, Decimal("120.50")),
    ("M1", "email", dt.date(2026, 4, 2), 50, 50, 20, 6, 1, Decimal("30.00")),
    ("M1B", "email", dt.date(2026, 4, 2), 25, 24, 12, 3, 2, Decimal("44.25")),
    ("M2", "sms", dt.date(2026, 4, 1), 30, 29, 0, 5, 1, Decimal("9.99")),
    ("M9", "email", dt.date(2026, 4, 3), 7, 7, 1, 0, 0, Decimal("0.00")),  # a message not loaded
]
MESSAGE_STEP = {"M1": "A1", "M1B": "A1", "M2": "A3"}


def load_flow(warehouse) -> None:
    load(warehouse, "klaviyo_flows", [{"id": "F1", "name": "Welcome", "status": "live", "updated_date": EDITED}],
         ("account_id", "id"), "updated_date")  # fmt: skip
    steps = [
        {"id": "A1", "flow_id": "F1", "action_type": "ab-test", "status": "live", "next_action_id": "A2"},
        {"id": "A2", "flow_id": "F1", "action_type": "time-delay", "status": None, "next_action_id": "A3"},
        {"id": "A3", "flow_id": "F1", "action_type": "send-sms", "status": "live", "next_action_id": None},
    ]
    load(warehouse, "klaviyo_flow_actions", [{**s, "updated_date": EDITED} for s in steps], ("account_id", "id"),
         "updated_date")  # fmt: skip
    messages = [
        {"id": "M1", "flow_action_id": "A1", "channel": "email", "name": "Welcome A"},
        {"id": "M1B", "flow_action_id": "A1", "channel": "email", "name": "Welcome B"},
        {"id": "M2", "flow_action_id": "A3", "channel": "sms", "name": "Welcome SMS"},
    ]
    load(warehouse, "klaviyo_flow_messages", [{**m, "flow_id": "F1", "updated_date": EDITED} for m in messages],
         ("account_id", "id"), "updated_date")  # fmt: skip
    fetched = dt.datetime(2026, 4, 10, tzinfo=UTC)
    load(
        warehouse,
        "klaviyo_flow_stats_daily",
        [
            {"flow_id": "F1", "fetched_at": fetched, **dict(zip(STAT_COLUMNS, row, strict=True))}
            for row in STATS
        ],
        ("account_id", "flow_id", "flow_message_id", "send_channel", "day"),
    )
    # The flow is read again without its SMS step: the step is soft-deleted, as the flows sync does it.
    with warehouse.transaction() as conn:
        gone = q.mark_unlisted_owned_deleted(
            conn, "klaviyo_flow_actions", "flow_id", ("account_id", "id"), ACCOUNT, ["F1"], [("A1",), ("A2",)]
        )
    assert gone == [("A3",)]


def test_flow_steps_carry_their_messages_figures_and_deleted_steps_stay(warehouse):
    load_flow(warehouse)
    daily = select(warehouse, "SELECT * FROM klaviyo_flow_step_daily ORDER BY message_id, day")
    assert [(r["message_id"], r["day"]) for r in daily] == sorted((s[0], s[2]) for s in STATS)
    by_message = {(r["message_id"], r["day"]): r for r in daily}
    sms = by_message[("M2", dt.date(2026, 4, 1))]
    assert (sms["flow_name"], sms["step_id"], sms["step_type"], sms["channel"], sms["message_name"]) == (
        "Welcome", "A3", "send-sms", "sms", "Welcome SMS",
    )  # fmt: skip
    assert sms["step_deleted"] is True and sms["message_deleted"] is False
    assert by_message[("M1", dt.date(2026, 4, 1))]["step_deleted"] is False
    orphan = by_message[("M9", dt.date(2026, 4, 3))]
    assert orphan["step_id"] is None and orphan["step_deleted"] is None and orphan["recipients"] == 7

    steps = {r["step_id"]: r for r in select(warehouse, "SELECT * FROM klaviyo_flow_step_performance")}
    assert set(steps) == {"A1", "A2", "A3", None}  # the delay (no figures) and the deleted step included
    for step in ("A1", "A3", None):
        rows = [s for s in STATS if MESSAGE_STEP.get(s[0]) == step]
        got = steps[step]
        want_recipients, want_delivered = sum(s[3] for s in rows), sum(s[4] for s in rows)
        assert got["recipients"] == want_recipients and got["delivered"] == want_delivered
        assert got["opens_unique"] == sum(s[5] for s in rows)
        assert got["clicks_unique"] == sum(s[6] for s in rows)
        assert got["conversion_uniques"] == sum(s[7] for s in rows)
        assert got["revenue"] == sum(s[8] for s in rows)
        assert got["days_reported"] == len({s[2] for s in rows})
        assert (got["first_day"], got["last_day"]) == (min(s[2] for s in rows), max(s[2] for s in rows))
        assert got["open_rate"] == pytest.approx(sum(s[5] for s in rows) / want_delivered)
        assert got["conversion_rate"] == pytest.approx(sum(s[7] for s in rows) / want_delivered)
        assert got["revenue_per_recipient"] == pytest.approx(float(sum(s[8] for s in rows)) / want_recipients)
        assert got["flow_name"] == "Welcome"
    a1 = steps["A1"]
    # Two messages (an A/B test) over two days.
    assert (a1["recipients"], a1["revenue"]) == (175, Decimal("194.75"))
    assert (a1["messages"], a1["channels"], a1["message_names"]) == (2, "email", "Welcome A, Welcome B")
    assert (a1["step_type"], a1["next_step_id"], a1["step_deleted"]) == ("ab-test", "A2", False)
    delay = steps["A2"]
    assert (delay["messages"], delay["days_reported"], delay["recipients"]) == (0, 0, 0)
    assert delay["open_rate"] is None
    assert steps["A3"]["step_deleted"] is True and steps["A3"]["recipients"] == 30
    assert steps[None]["step_deleted"] is None and steps[None]["recipients"] == 7

    # A step's totals are the sum of its daily rows, for every figure.
    figures = ("recipients", "delivered", "opens_unique", "clicks_unique", "conversion_uniques", "revenue")
    for step, got in steps.items():
        mine = [r for r in daily if r["step_id"] == step]
        assert {f: got[f] for f in figures} == {f: sum(r[f] for r in mine) for f in figures}, step


# -- membership over time --------------------------------------------------------------------------------------
def at(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), UTC)


def expected_series(spells: list[tuple[dt.date, dt.date | None]], today: dt.date) -> dict[dt.date, tuple]:
    """{day: (members at its end, joined, left)} from the first join to today: in on joined_day <= day < left_day."""
    first = min(j for j, _ in spells)
    series = {}
    for k in range((today - first).days + 1):
        day = first + dt.timedelta(days=k)
        series[day] = (
            sum(1 for j, left in spells if j <= day and (left is None or day < left)),
            sum(1 for j, _ in spells if j == day),
            sum(1 for _, left in spells if left == day),
        )
    return series


def membership(warehouse, group_id: str, timezone: str | None = None) -> dict[dt.date, tuple]:
    with warehouse.engine.connect() as conn:
        if timezone:
            conn.execute(text("SELECT set_config('klaviyo.account_timezone', :tz, false)"), {"tz": timezone})
        rows = conn.execute(
            text(
                "SELECT day, members, members_joined, members_left FROM klaviyo_segment_membership_daily"
                " WHERE group_id = :g ORDER BY day"
            ),
            {"g": group_id},
        ).all()
    return {r.day: (r.members, r.members_joined, r.members_left) for r in rows}


def test_membership_per_day_from_joins_and_departures(warehouse):
    today = dt.datetime.now(UTC).date()
    d = [today - dt.timedelta(days=10) + dt.timedelta(days=k) for k in range(11)]  # d[10] is today
    segment = [  # (profile, joined_group_at, left_at)
        ("P1", at(d[2], 12), at(d[5], 12)),  # joined day 2, left day 5: a member on days 2-4 only
        ("P2", at(d[2], 15), None),
        ("P3", at(d[4], 9), at(d[4], 18)),  # in and out on one day
        ("P4", at(d[7], 2), None),  # 02:00 UTC: the evening before in New York
    ]
    load(warehouse, "klaviyo_segments", [{"id": "S1", "name": "Engaged", "updated_date": EDITED}],
         ("account_id", "id"), "updated_date")  # fmt: skip
    load(warehouse, "klaviyo_segment_members",
         [{"segment_id": "S1", "profile_id": p, "joined_group_at": j, "left_at": x} for p, j, x in segment],
         ("account_id", "segment_id", "profile_id"), "joined_group_at")  # fmt: skip
    load(warehouse, "klaviyo_list_members",
         [{"list_id": "L1", "profile_id": "P1", "joined_group_at": at(d[5], 8), "left_at": None}],
         ("account_id", "list_id", "profile_id"), "joined_group_at")  # fmt: skip

    utc = membership(warehouse, "S1")
    assert utc == expected_series([(j.date(), x.date() if x else None) for _, j, x in segment], today)
    assert [utc[day][0] for day in d[2:8]] == [2, 2, 2, 1, 1, 2]  # P1 counts on days 2-4, not on day 5
    assert min(utc) == d[2] and max(utc) == today  # the series runs from the first join to today
    assert utc[d[4]] == (2, 1, 1) and utc[d[5]] == (1, 0, 1)

    # The account's days: in New York P4 joined on day 6.
    ny = membership(warehouse, "S1", "America/New_York")
    to_ny = lambda t: t.astimezone(ZoneInfo("America/New_York")).date()  # noqa: E731
    ny_today = to_ny(dt.datetime.now(UTC))
    assert ny == expected_series([(to_ny(j), to_ny(x) if x else None) for _, j, x in segment], ny_today)
    assert ny[d[6]][1] == 1 and utc[d[6]][1] == 0
    # The account's own time zone, as a sync records it in klaviyo_accounts, wins over the setting.
    sync_status.note_account(warehouse.engine, ACCOUNT, "America/New_York", "acme")
    assert membership(warehouse, "S1") == ny
    assert membership(warehouse, "S1", "Asia/Tokyo") == ny

    lists = select(warehouse, "SELECT DISTINCT group_type, group_name FROM klaviyo_segment_membership_daily"
                              " WHERE group_id = 'L1'")  # fmt: skip
    assert lists == [{"group_type": "list", "group_name": None}]  # a list too; its row not loaded: no name
    assert membership(warehouse, "L1") == expected_series([(d[5], None)], today)


# -- campaign audiences ----------------------------------------------------------------------------------------
def test_campaign_audiences_with_member_counts_and_the_estimate(warehouse):
    load(warehouse, "klaviyo_lists", [
        {"id": "L1", "name": "Newsletter", "member_count": 100, "updated_date": EDITED},
        {"id": "L2", "name": "Suppressed", "member_count": None, "updated_date": EDITED},  # no count read yet
    ], ("account_id", "id"), "updated_date")  # fmt: skip
    load(warehouse, "klaviyo_segments", [
        {"id": "S1", "name": "VIP", "member_count": 40, "updated_date": EDITED},
    ], ("account_id", "id"), "updated_date")  # fmt: skip
    # L2's members as the member sync left them: three in, one gone.
    load(warehouse, "klaviyo_list_members", [
        {"list_id": "L2", "profile_id": p, "joined_group_at": EDITED, "left_at": left}
        for p, left in (("P1", None), ("P2", None), ("P3", None), ("P4", EDITED + dt.timedelta(days=1)))
    ], ("account_id", "list_id", "profile_id"), "joined_group_at")  # fmt: skip
    load(warehouse, "klaviyo_campaigns", [
        {"id": c, "name": n, "channel": "email", "status": "Sent", "updated_date": EDITED}
        for c, n in (("C1", "Spring sale"), ("C2", "Unknown audience"), ("C3", "Draft"))
    ], ("account_id", "id"), "updated_date")  # fmt: skip
    audiences = {"C1": {"included": ["L1", "S1"], "excluded": ["L2"]}, "C2": {"included": ["L1", "XX9"]}}
    load(warehouse, "klaviyo_campaign_audiences", [
        {"campaign_id": c, "audience_id": a, "inclusion": inclusion, "updated_date": EDITED}
        for c, by in audiences.items() for inclusion, ids in by.items() for a in ids
    ], ("account_id", "campaign_id", "audience_id", "inclusion"), "updated_date")  # fmt: skip

    rows = select(warehouse, "SELECT * FROM klaviyo_campaign_audience_members WHERE campaign_id = 'C1'")
    got = {
        r["audience_id"]: (r["inclusion"], r["audience_type"], r["audience_name"], r["member_count"],
                           r["live_members"], r["members"])
        for r in rows
    }  # fmt: skip
    assert got == {
        "L1": ("included", "list", "Newsletter", 100, 0, 100),
        "S1": ("included", "segment", "VIP", 40, 0, 40),
        "L2": ("excluded", "list", "Suppressed", None, 3, 3),  # no count read: its live member rows
    }

    size = {r["campaign_id"]: r for r in select(warehouse, "SELECT * FROM klaviyo_campaign_audience_size")}
    assert set(size) == {"C1", "C2", "C3"}
    c1 = size["C1"]
    included, excluded = 100 + 40, 3
    assert (c1["included_groups"], c1["excluded_groups"], c1["unknown_groups"]) == (2, 1, 0)
    assert (c1["included_members"], c1["excluded_members"]) == (included, excluded)
    assert c1["audience_upper_bound"] == included
    assert c1["estimated_audience"] == included - excluded
    assert c1["audience_lower_bound"] == max(100, 40) - excluded
    c2 = size["C2"]  # an id that is no loaded list or segment: nothing is estimated
    assert c2["unknown_groups"] == 1
    assert c2["audience_upper_bound"] is None and c2["estimated_audience"] is None
    c3 = size["C3"]  # no audience at all
    assert (c3["included_groups"], c3["audience_upper_bound"], c3["estimated_audience"]) == (0, 0, 0)

    # The campaign is read again without its exclusion: the estimate follows.
    with warehouse.transaction() as conn:
        q.mark_unlisted_owned_deleted(
            conn, "klaviyo_campaign_audiences", "campaign_id",
            ("account_id", "campaign_id", "audience_id", "inclusion"), ACCOUNT, ["C1"],
            [("C1", "L1", "included"), ("C1", "S1", "included")],
        )  # fmt: skip
    again = select(warehouse, "SELECT * FROM klaviyo_campaign_audience_size WHERE campaign_id = 'C1'")[0]
    assert (again["excluded_groups"], again["estimated_audience"]) == (0, included)


# -- assets, lineage, comments, the BI role ---------------------------------------------------------------------
def test_the_views_are_assets_with_lineage_comments_and_bi_access(warehouse):
    from pipelines.definitions import defs

    assert {v.name for v in VIEWS} >= NEW_VIEWS
    graph = defs.resolve_asset_graph()
    assert set(graph.get(K("bi", "flow_step_performance")).parent_keys) == {
        K("bi", "flow_step_daily"), K("flows"), K("flow_messages"),
    }  # fmt: skip
    assert set(graph.get(K("bi", "segment_membership_daily")).parent_keys) == {
        K("list_members"), K("segment_members"), K("lists"), K("segments"),
    }  # fmt: skip
    assert set(graph.get(K("bi", "campaign_audience_members")).parent_keys) == {
        K("campaigns"), K("lists"), K("segments"), K("list_members"), K("segment_members"),
    }  # fmt: skip

    load_flow(warehouse)
    keys = [v.key for v in VIEWS if v.name in NEW_VIEWS]
    result = dg.materialize([klaviyo_bi_views], resources={"warehouse": warehouse}, selection=keys)
    assert result.success
    meta = {
        e.asset_key: e.step_materialization_data.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    assert set(meta) == set(keys)
    for key, m in meta.items():
        columns = m["dagster/column_schema"].value.columns
        assert columns and all(c.description for c in columns), key  # every column commented
    lineage = {
        key: {
            column: {(d.asset_key, d.column_name) for d in deps}
            for column, deps in m["dagster/column_lineage"].value.deps_by_column.items()
        }
        for key, m in meta.items()
    }
    daily = lineage[K("bi", "flow_step_daily")]
    assert daily["revenue"] == {(K("flow_stats_daily"), "conversion_value")}
    assert daily["message_name"] == {(K("flow_messages"), "name")}
    assert lineage[K("bi", "flow_step_performance")]["open_rate"] == {
        (K("bi", "flow_step_daily"), "opens_unique"), (K("bi", "flow_step_daily"), "delivered"),
    }  # fmt: skip
    assert lineage[K("bi", "segment_membership_daily")]["group_name"] == {
        (K("lists"), "name"), (K("segments"), "name"),
    }  # fmt: skip
    assert lineage[K("bi", "campaign_audience_members")]["audience_id"] == {(K("campaigns"), "audience_id")}
    assert meta[K("bi", "flow_step_daily")]["dagster/row_count"].value == len(STATS)
    assert meta[K("bi", "flow_step_performance")]["dagster/row_count"].value == 4

    with warehouse.engine.connect() as conn:
        for name in sorted(NEW_VIEWS):
            assert conn.execute(
                text("SELECT has_table_privilege('klaviyo_bi', to_regclass(:v), 'SELECT')"), {"v": name}
            ).scalar_one(), name
        conn.execute(text("SET LOCAL ROLE klaviyo_bi"))  # undone with the transaction
        assert conn.execute(text("SELECT count(*) FROM klaviyo_flow_step_performance")).scalar_one() == 4
        conn.rollback()
