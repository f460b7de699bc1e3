"""The simulator as a real Klaviyo account: key scopes, paged reports, the account's time zone, future and
60-day timeframes, sends spanning days, late-imported events, absent relationship data, refused metric
filters, parameter rate tiers, and one account per key. Over real HTTP, as tests/test_simulator.py."""

from __future__ import annotations

import base64
import datetime as dt
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from klaviyo_sim import Account
from klaviyo_sim.data import parse_time
from klaviyo_sim.reports import (
    MESSAGE_STATS,
    campaign_send_days,
    campaign_statistics,
    message_counts,
    message_statistics,
)
from klaviyo_sim.spec import operations
from tests.test_simulator import HEADERS, KEY, _validator

UTC = dt.UTC
OTHER_KEY = "pk_" + "o" * 34
ANCHOR = dt.datetime(2026, 6, 1, tzinfo=UTC)  # history 2026-02-01 .. 2026-06-01, all in the past


def headers(key: str = KEY) -> dict:
    return {**HEADERS, "Authorization": f"Klaviyo-API-Key {key}"}


def get(sim, path, key=KEY, **kw):
    return requests.get(sim.url + path, headers=headers(key), timeout=30, **kw)


def all_events(sim, path, key=KEY) -> list[str]:
    url, seen = sim.url + path, []
    while url:
        assert len(seen) < 10_000, "paging does not end"
        r = requests.get(url, headers=headers(key), timeout=30)
        assert r.status_code == 200, r.text
        seen += [d["id"] for d in r.json()["data"]]
        url = r.json()["links"].get("next")
    return seen


def metric_id(account: Account, name: str = "Placed Order") -> str:
    return next(m.id for m in account.metrics if m.attributes["name"] == name)


def report_body(op_id: str, account: Account, start: str, end: str, **extra) -> dict:
    rtype = {
        "query_flow_values": "flow-values-report",
        "query_flow_series": "flow-series-report",
        "query_campaign_values": "campaign-values-report",
        "query_form_values": "form-values-report",
        "query_form_series": "form-series-report",
        "query_segment_values": "segment-values-report",
        "query_segment_series": "segment-series-report",
    }[op_id]
    family = rtype.split("-")[0]
    attrs = {
        "statistics": {
            "flow": ["recipients", "opens", "open_rate", "conversions"],
            "campaign": ["recipients", "opens", "open_rate", "conversions", "conversion_value"],
            "form": ["viewed_form", "submits"],
            "segment": ["members_added", "total_members"],
        }[family],
        "timeframe": {"start": start, "end": end},
    }
    if family in ("flow", "campaign"):
        attrs["conversion_metric_id"] = metric_id(account)
    if rtype.endswith("series-report"):
        attrs["interval"] = "daily"
    attrs.update(extra)
    return {"data": {"type": rtype, "attributes": attrs}}


def post(sim, op_id: str, body: dict, key=KEY, url: str | None = None):
    return requests.post(
        url or sim.url + operations()[op_id].path, headers=headers(key), json=body, timeout=30
    )


def all_report_pages(sim, op_id: str, body: dict, key=KEY) -> list[dict]:
    """Every page of a report: the same body POSTed to each `links.next`."""
    pages, url = [], None
    while True:
        r = post(sim, op_id, body, key, url)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        url = r.json()["links"].get("next")
        if not url:
            return pages


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=k) for k in range((last - first).days + 1)]


# -- 1. key scopes ---------------------------------------------------------------------------------------
def test_operations_carry_the_scopes_of_the_spec():
    ops = operations()
    assert ops["get_events"].scopes == ("events:read",)
    assert ops["get_flows"].scopes == ("flows:read",)
    assert ops["query_campaign_values"].scopes == ("campaigns:read",)
    assert ops["get_accounts"].scopes == ("accounts:read",)
    assert set(ops["get_profiles_for_list"].scopes) == {"lists:read", "profiles:read"}
    assert all(op.scopes for op in ops.values())


def test_a_key_lacking_a_scope_gets_klaviyos_403(make_sim):
    sim = make_sim(key_scopes={KEY: {"flows:read", "accounts:read"}})
    assert get(sim, "/api/flows").status_code == 200
    assert get(sim, "/api/accounts").status_code == 200
    for path in ("/api/events", "/api/profiles", "/api/metrics"):
        r = get(sim, path)
        assert r.status_code == 403, path
        err = r.json()["errors"][0]
        assert err["code"] == "permission_denied" and err["status"] == 403
        assert err["title"] == "You do not have permission to perform this action."
        assert err["source"] == {"pointer": "/data/"}
    assert "events:read" in get(sim, "/api/events").json()["errors"][0]["detail"]
    yesterday = dt.datetime.now(UTC).date() - dt.timedelta(days=1)
    start, end = f"{yesterday}T00:00:00", f"{yesterday}T23:59:59"
    acct = sim.account
    assert (
        post(sim, "query_flow_values", report_body("query_flow_values", acct, start, end)).status_code == 200
    )
    r = post(sim, "query_segment_values", report_body("query_segment_values", acct, start, end))
    assert r.status_code == 403 and "segments:read" in r.json()["errors"][0]["detail"]
    # A key not listed has every scope.
    assert get(sim, "/api/events", key=OTHER_KEY).status_code == 200


def test_scopes_change_and_keys_are_revoked_at_runtime(make_sim):
    sim = make_sim()
    assert get(sim, "/api/tags").status_code == 200
    sim.set_scopes(KEY, {"flows:read"})
    assert get(sim, "/api/tags").status_code == 403
    assert get(sim, "/api/flows").status_code == 200
    sim.set_scopes(KEY, None)
    assert get(sim, "/api/tags").status_code == 200
    # Over HTTP, for a simulator run as its own process.
    r = requests.post(sim.url + f"/_sim/scopes?key={KEY}&scopes=tags:read,events:read", timeout=10)
    assert r.status_code == 200
    assert get(sim, "/api/tags").status_code == 200 and get(sim, "/api/flows").status_code == 403
    requests.post(sim.url + f"/_sim/scopes?key={KEY}&scopes=", timeout=10)  # no scope at all
    assert get(sim, "/api/tags").status_code == 403
    requests.post(sim.url + f"/_sim/scopes?key={KEY}&scopes=*", timeout=10)
    assert get(sim, "/api/flows").status_code == 200
    # Revoked mid-run: 401 from the next request on, other keys unaffected; restored.
    assert requests.post(sim.url + f"/_sim/revoke?key={KEY}", timeout=10).status_code == 200
    r = get(sim, "/api/flows")
    assert r.status_code == 401 and r.json()["errors"][0]["code"] == "authentication_failed"
    assert get(sim, "/api/flows", key=OTHER_KEY).status_code == 200
    sim.revoke_key(KEY, revoked=False)
    assert get(sim, "/api/flows").status_code == 200
    sim.revoke_key(KEY)
    assert get(sim, "/api/flows").status_code == 401
    # restricted_keys keep answering 403 on everything.
    restricted = make_sim(restricted_keys={KEY})
    assert get(restricted, "/api/flows").json()["errors"][0]["code"] == "permission_denied"


# -- 2. report pages -------------------------------------------------------------------------------------
def test_page_cursor_is_a_parameter_of_campaign_and_flow_reports_only(sim):
    acct = sim.account
    day = dt.datetime.now(UTC).date() - dt.timedelta(days=3)
    start, end = f"{day}T00:00:00", f"{day}T23:59:59"
    for op_id in ("query_form_values", "query_form_series", "query_segment_values", "query_segment_series"):
        assert "page_cursor" not in operations()[op_id].params
        url = sim.url + operations()[op_id].path + "?page_cursor=abc"
        r = post(sim, op_id, report_body(op_id, acct, start, end), url=url)
        assert r.status_code == 400, op_id
        assert r.json()["errors"][0]["source"] == {"parameter": "page_cursor"}
        # Not paged: every segment (25) or form in one answer.
        body = post(sim, op_id, report_body(op_id, acct, start, end)).json()
        assert "next" not in body["links"]
        family = acct.segments if "segment" in op_id else acct.forms
        assert len(body["data"]["attributes"]["results"]) == len(family)
    for op_id in ("query_campaign_values", "query_flow_values", "query_flow_series"):
        assert "page_cursor" in operations()[op_id].params
        url = sim.url + operations()[op_id].path + "?page_cursor=garbage"
        r = post(sim, op_id, report_body(op_id, acct, start, end), url=url)
        assert r.status_code == 400, op_id
        err = r.json()["errors"][0]
        assert err["code"] == "invalid" and err["source"] == {"parameter": "page_cursor"}


@pytest.mark.parametrize("op_id", ["query_flow_values", "query_flow_series", "query_campaign_values"])
def test_campaign_and_flow_reports_come_in_pages(make_sim, op_id):
    acct = Account(seed=7, anchor=ANCHOR)
    paged = make_sim(acct)
    whole = make_sim(Account(seed=7, anchor=ANCHOR), report_page_size=None)
    if op_id == "query_campaign_values":  # the whole history: more than a page of sent campaigns
        start, end = (
            f"{acct.history_start.date()}T00:00:00",
            f"{ANCHOR.date() + dt.timedelta(days=5)}T00:00:00",
        )
    else:
        start, end = "2026-05-01T00:00:00", "2026-05-07T23:59:59"
    body = report_body(op_id, acct, start, end)
    pages = all_report_pages(paged, op_id, body)
    unpaged = post(whole, op_id, body).json()
    everything = unpaged["data"]["attributes"]["results"]
    assert len(everything) > 20 and "next" not in unpaged["links"]
    assert len(pages) == -(-len(everything) // 10) >= 3
    assert [r for p in pages for r in p["data"]["attributes"]["results"]] == everything
    for k, page in enumerate(pages):
        results = page["data"]["attributes"]["results"]
        assert len(results) == (10 if k < len(pages) - 1 else len(everything) - 10 * k)
        errors = list(_validator(op_id).iter_errors(page))
        assert not errors, errors[0]
        nxt = page["links"].get("next")
        if k < len(pages) - 1:
            split = urlsplit(nxt)
            assert f"{split.scheme}://{split.netloc}{split.path}" == paged.url + operations()[op_id].path
            assert list(parse_qs(split.query)) == ["page_cursor"]
        else:
            assert nxt is None
        if op_id == "query_flow_series":
            assert page["data"]["attributes"]["date_times"] == unpaged["data"]["attributes"]["date_times"]
        rel = "campaigns" if op_id == "query_campaign_values" else "flows"
        ids = [d["id"] for d in page["data"]["relationships"][rel]["data"]]
        assert ids == [r["groupings"][f"{rel[:-1]}_id"] for r in results]


def test_a_report_cursor_belongs_to_its_body(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct)
    body = report_body("query_flow_values", acct, "2026-05-01T00:00:00", "2026-05-07T23:59:59")
    nxt = post(sim, "query_flow_values", body).json()["links"]["next"]
    assert post(sim, "query_flow_values", body, url=nxt).status_code == 200
    # The same body, reordered or reformatted, is the same request.
    reordered = {
        "data": {
            "attributes": dict(reversed(body["data"]["attributes"].items())),
            "type": body["data"]["type"],
        }
    }
    assert post(sim, "query_flow_values", reordered, url=nxt).status_code == 200
    other = report_body("query_flow_values", acct, "2026-05-02T00:00:00", "2026-05-07T23:59:59")
    cursor = parse_qs(urlsplit(nxt).query)["page_cursor"][0]
    forged = base64.urlsafe_b64encode(b"report::10::abc::def").decode().rstrip("=")
    for url, payload in [
        (nxt, other),  # another timeframe
        (nxt.replace(cursor, cursor[:-3] + "AAA"), body),  # tampered
        (sim.url + "/api/flow-values-reports?page_cursor=" + forged, body),
        (sim.url + "/api/flow-values-reports?page_cursor=%25%25%25", body),
    ]:
        r = post(sim, "query_flow_values", payload, url=url)
        assert r.status_code == 400, url
        err = r.json()["errors"][0]
        assert err["code"] == "invalid" and err["source"] == {"parameter": "page_cursor"}
    # A flow-values cursor is no use on flow-series either.
    series = report_body("query_flow_series", acct, "2026-05-01T00:00:00", "2026-05-07T23:59:59")
    assert (
        post(sim, "query_flow_series", series, url=nxt.replace("flow-values", "flow-series")).status_code
        == 400
    )


# -- 3. the account's time zone --------------------------------------------------------------------------
def test_the_account_reports_its_time_zone(make_sim):
    assert get(make_sim(), "/api/accounts").json()["data"][0]["attributes"]["timezone"] == "UTC"
    sim = make_sim(Account(seed=7, timezone="America/New_York"))
    body = get(sim, "/api/accounts").json()
    assert body["data"][0]["attributes"]["timezone"] == "America/New_York"
    assert not list(_validator("get_accounts").iter_errors(body))
    with pytest.raises(ValueError, match="time zone"):
        Account(timezone="Mars/Olympus_Mons")


@pytest.mark.parametrize(
    "zone,first,last,offsets",
    [
        # 2026-03-08: New York springs forward; the day is one bucket, the next midnight is -04:00.
        ("America/New_York", "2026-03-07", "2026-03-09", ["-05:00", "-05:00", "-04:00"]),
        ("Asia/Kolkata", "2026-04-10", "2026-04-12", ["+05:30"] * 3),
        ("UTC", "2026-04-10", "2026-04-11", ["+00:00"] * 2),
    ],
)
def test_series_are_bucketed_by_the_accounts_local_days(make_sim, zone, first, last, offsets):
    acct = Account(seed=7, anchor=ANCHOR, timezone=zone)
    sim = make_sim(acct, report_page_size=None)
    days = days_between(dt.date.fromisoformat(first), dt.date.fromisoformat(last))
    want_times = [f"{d}T00:00:00{o}" for d, o in zip(days, offsets, strict=True)]
    # The offset sent is ignored: the wall-clock times are read in the account's zone.
    for suffix in ("", "Z", "+09:00", "-07:00"):
        body = report_body("query_flow_series", acct, f"{first}T00:00:00{suffix}", f"{last}T23:59:59{suffix}")
        r = post(sim, "query_flow_series", body)
        assert r.status_code == 200, r.text
        attrs = r.json()["data"]["attributes"]
        assert attrs["date_times"] == want_times
        for result in attrs["results"]:
            fid = result["groupings"]["flow_id"]
            assert result["statistics"]["recipients"] == [
                message_counts(acct, "flow", fid, d)["recipients"] for d in days
            ]
    values = post(
        sim,
        "query_flow_values",
        report_body("query_flow_values", acct, f"{first}T00:00:00Z", f"{last}T23:59:59Z"),
    )
    for result in values.json()["data"]["attributes"]["results"]:
        fid = result["groupings"]["flow_id"]
        assert result["statistics"]["recipients"] == sum(
            message_counts(acct, "flow", fid, d)["recipients"] for d in days
        )


def test_a_campaigns_send_day_is_the_accounts_local_day(make_sim):
    acct = Account(seed=7, anchor=ANCHOR, timezone="Asia/Tokyo")  # +09:00: evenings UTC are next-day
    sim = make_sim(acct, report_page_size=None)
    late = next(
        c
        for c in acct.campaigns
        if c.attributes["send_time"] and parse_time(c.attributes["send_time"]).hour >= 15
    )
    utc_day = parse_time(late.attributes["send_time"]).date()
    local_day = utc_day + dt.timedelta(days=1)
    assert campaign_send_days(acct, late) == [local_day]

    def listed(day: dt.date) -> dict | None:
        body = report_body("query_campaign_values", acct, f"{day}T00:00:00", f"{day}T23:59:59")
        body["data"]["attributes"]["filter"] = f'equals(campaign_id,"{late.id}")'
        results = post(sim, "query_campaign_values", body).json()["data"]["attributes"]["results"]
        return results[0]["statistics"] if results else None

    assert listed(utc_day) is None
    got = listed(local_day)
    stats = ["recipients", "opens", "open_rate", "conversions", "conversion_value"]
    assert got == message_statistics(message_counts(acct, "campaign", late.id, local_day), stats)


# -- 4. future timeframes ----------------------------------------------------------------------------------
def test_a_timeframe_ending_in_the_future_is_refused(make_sim):
    sim = make_sim()
    acct = sim.account
    now = dt.datetime.now(UTC)
    later = (now + dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")
    start = (now - dt.timedelta(days=3)).strftime("%Y-%m-%dT00:00:00")
    for op_id in ("query_flow_values", "query_flow_series", "query_form_values", "query_segment_series"):
        r = post(sim, op_id, report_body(op_id, acct, start, later))
        assert r.status_code == 400, op_id
        err = r.json()["errors"][0]
        assert err["code"] == "invalid" and err["source"] == {"pointer": "/data/attributes/timeframe/end"}
        assert "future" in err["detail"]
    keyed = report_body("query_flow_values", acct, start, later)
    keyed["data"]["attributes"]["timeframe"] = {"key": "today"}  # ends now
    assert post(sim, "query_flow_values", keyed).status_code == 200
    # The end is read in the account's zone: two hours ahead of UTC's clock is long past in Kiritimati (+14).
    kiritimati = make_sim(Account(seed=7, timezone="Pacific/Kiritimati"))
    assert (
        post(
            kiritimati, "query_flow_values", report_body("query_flow_values", acct, start, later)
        ).status_code
        == 200
    )
    # ... and an end an hour ahead of New York's clock is refused although it is past in UTC.
    ny = make_sim(Account(seed=7, timezone="America/New_York"))
    ny_later = (now.astimezone(ny.account.zone) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    assert parse_time(ny_later) < now
    assert (
        post(ny, "query_flow_values", report_body("query_flow_values", acct, start, ny_later)).status_code
        == 400
    )
    allowed = make_sim(refuse_future_timeframes=False)
    assert (
        post(allowed, "query_flow_values", report_body("query_flow_values", acct, start, later)).status_code
        == 200
    )


# -- 5. exactly 60 days --------------------------------------------------------------------------------------
def test_a_daily_series_of_exactly_60_days_is_accepted_in_both_end_styles(make_sim):
    acct = Account(seed=7, anchor=ANCHOR)
    sim = make_sim(acct, report_page_size=None)
    first = dt.date(2026, 3, 1)
    day60, day61, day62 = (first + dt.timedelta(days=k) for k in (59, 60, 61))
    for op_id in ("query_flow_series", "query_form_series", "query_segment_series"):
        for end in (f"{day60}T23:59:59", f"{day61}T00:00:00"):
            r = post(sim, op_id, report_body(op_id, acct, f"{first}T00:00:00", end))
            assert r.status_code == 200, (op_id, end, r.text)
            times = r.json()["data"]["attributes"]["date_times"]
            assert len(times) == 60 and times[0].startswith(str(first)) and times[-1].startswith(str(day60))
        for end in (f"{day61}T23:59:59", f"{day62}T00:00:00", f"{day61}T00:00:01"):
            r = post(sim, op_id, report_body(op_id, acct, f"{first}T00:00:00", end))
            assert r.status_code == 400, (op_id, end)
            assert "too long" in r.json()["errors"][0]["detail"]
    # An exclusive-style end does not count the day it opens in values reports either.
    values = [
        post(
            sim, "query_form_values", report_body("query_form_values", acct, "2026-03-01T00:00:00", end)
        ).json()
        for end in ("2026-03-02T23:59:59", "2026-03-03T00:00:00")
    ]
    assert values[0]["data"]["attributes"] == values[1]["data"]["attributes"]


# -- 6. campaign sends that span days ------------------------------------------------------------------------
def test_every_third_send_spans_days_and_says_so(make_sim):
    acct = Account(seed=7, anchor=ANCHOR, timezone="America/New_York", multi_day_sends=True)
    sent = [c for c in acct.campaigns if c.attributes["send_time"]]
    spanning = [c for c in sent if len(campaign_send_days(acct, c)) > 1]
    assert [c.id for c in spanning] == [c.id for k, c in enumerate(sent) if k % 3 == 2 and k >= 5]
    assert {len(campaign_send_days(acct, c)) for c in spanning} == {2, 3}
    sim = make_sim(acct)
    for c in sent:
        days = campaign_send_days(acct, c)
        assert days == days_between(days[0], days[-1])  # consecutive local days
        [message] = get(sim, f"/api/campaigns/{c.id}/campaign-messages").json()["data"]
        send_times = message["attributes"]["send_times"]
        assert [parse_time(t["datetime"]).astimezone(acct.zone).date() for t in send_times] == days
        assert send_times[0]["datetime"] == c.attributes["send_time"]
        strategy = c.attributes["send_strategy"]
        local = strategy["method"] == "static" and strategy["options"]["is_local"]
        assert all(t["is_local"] == local for t in send_times)
        if len(days) > 1:
            assert local or (strategy["method"], strategy["throttle_percentage"]) == (
                "throttled",
                {2: 50, 3: 33}[len(days)],
            )
            assert len(days) == 2 or not local
        else:
            assert not local and strategy.get("throttle_percentage") in (None, 20)
    # Switched off, every send is one day; the helpers on the account agree with the report module's.
    plain = Account(seed=7, anchor=ANCHOR, multi_day_sends=False)
    assert all(len(campaign_send_days(plain, c)) <= 1 for c in plain.campaigns)
    assert all(acct.campaign_send_days(c.id) == campaign_send_days(acct, c) for c in acct.campaigns)
    assert Account(seed=7).multi_day_sends  # on by default


def test_a_campaign_report_sums_the_send_days_inside_the_timeframe(make_sim):
    acct = Account(seed=7, anchor=ANCHOR, timezone="America/New_York", multi_day_sends=True)
    sim = make_sim(acct, report_page_size=None)
    camp = next(c for c in acct.campaigns if len(campaign_send_days(acct, c)) == 3)
    d0, d1, d2 = campaign_send_days(acct, camp)
    stats = ["recipients", "opens", "open_rate", "conversions", "conversion_value"]

    def report(first: dt.date, last: dt.date) -> dict | None:
        body = report_body("query_campaign_values", acct, f"{first}T00:00:00", f"{last}T23:59:59")
        body["data"]["attributes"]["filter"] = f'equals(campaign_id,"{camp.id}")'
        r = post(sim, "query_campaign_values", body)
        assert r.status_code == 200, r.text
        results = r.json()["data"]["attributes"]["results"]
        return results[0]["statistics"] if results else None

    def summed(days: list[dt.date]) -> dict:
        counts = [message_counts(acct, "campaign", camp.id, d) for d in days]
        total = {k: sum(c[k] for c in counts) for k in counts[0]}
        return message_statistics(total, stats)

    whole = report(d0 - dt.timedelta(days=2), d2 + dt.timedelta(days=2))
    assert whole == pytest.approx(summed([d0, d1, d2]))
    assert whole == pytest.approx(campaign_statistics(acct, camp.id, stats))
    assert whole == pytest.approx(message_statistics(acct.campaign_whole_send(camp.id), stats))
    assert whole["recipients"] > message_counts(acct, "campaign", camp.id, d0)["recipients"]
    partial = report(d1, d2 + dt.timedelta(days=5))  # the timeframe starts inside the send
    assert partial == pytest.approx(summed([d1, d2]))
    assert partial == pytest.approx(campaign_statistics(acct, camp.id, stats, days=[d1, d2]))
    assert partial["recipients"] < whole["recipients"]
    assert report(d0, d0) == pytest.approx(summed([d0]))
    assert report(d0 - dt.timedelta(days=5), d0 - dt.timedelta(days=1)) is None
    assert report(d2 + dt.timedelta(days=1), d2 + dt.timedelta(days=4)) is None
    # Late conversions on a send day revise the whole send.
    acct.revise_stats("campaign", camp.id, d1, 4)
    assert report(d0, d2)["conversions"] == whole["conversions"] + 4
    assert campaign_statistics(acct, camp.id, ["conversions"]) == {"conversions": whole["conversions"] + 4}
    assert set(campaign_statistics(acct, camp.id)) == set(MESSAGE_STATS)


# -- 7. late-imported events ------------------------------------------------------------------------------------
def _expected_events(acct: Account, keep=lambda ts, i: True) -> list[str]:
    keys = [(acct.event_timestamp(i), 0, i) for i in range(acct.total_events)] + acct.imported_keys()
    return [acct.event_id(i) for ts, _, i in sorted(keys) if keep(ts, i)]


def test_late_imported_events_appear_in_order_with_every_filter_and_sort(make_sim):
    acct = Account(seed=7)
    sim = make_sim(acct)
    base = len(_expected_events(acct))
    late = acct.import_events(4, days_ago=10)
    tie_at = dt.datetime.fromtimestamp(acct.event_timestamp(1000), UTC)
    tied = acct.import_events(2, days_ago=0, at=tie_at)  # the same second as a seeded event: after it
    r = requests.post(sim.url + "/_sim/import_events?n=3&days_ago=2.5", timeout=10)
    assert r.status_code == 200 and len(r.json()["ids"]) == 3
    over_http = r.json()["ids"]
    expected = _expected_events(acct)
    assert len(expected) == base + 9 and set(late + tied + over_http) <= set(expected)
    assert expected.index(tied[0]) == expected.index(acct.event_id(1000)) + 1
    for size in (7, 200):
        assert all_events(sim, f"/api/events?page[size]={size}") == expected
        assert all_events(sim, f"/api/events?page[size]={size}&sort=-datetime") == expected[::-1]
    ts = acct.event_timestamp(acct.event_index(late[0]))
    lo, hi = ts - 3600, ts + 3600
    fmt = lambda t: dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    window = f"and(greater-or-equal(datetime,{fmt(lo)}),less-than(datetime,{fmt(hi)}))"
    want = _expected_events(acct, lambda t, i: lo <= t < hi)
    assert set(late) <= set(want)
    assert all_events(sim, f"/api/events?filter={window}&page[size]=3") == want
    assert all_events(sim, f"/api/events?filter={window}&page[size]=3&sort=-datetime") == want[::-1]
    exact = f"and(greater-than(timestamp,{ts - 1}),less-or-equal(timestamp,{ts}))"
    assert set(late) <= set(all_events(sim, f"/api/events?filter={exact}"))
    mid = acct.event_metric_id(acct.event_index(late[1]))
    by_metric = _expected_events(acct, lambda t, i: acct.event_metric_id(i) == mid)
    assert all_events(sim, f"/api/events?filter=equals(metric_id,'{mid}')&page[size]=50") == by_metric
    assert late[1] in by_metric
    both = f"and(equals(metric_id,'{mid}'),{window[4:-1]})"
    assert all_events(sim, f"/api/events?filter={both}&sort=-datetime&page[size]=2") == [
        e for e in want[::-1] if e in set(by_metric)
    ]
    # Page boundaries on every event around the tie (a cursor on an imported event, then seeded ones).
    near = f"and(greater-or-equal(timestamp,{acct.event_timestamp(998)}),less-or-equal(timestamp,{acct.event_timestamp(1002)}))"
    want = _expected_events(acct, lambda t, i: acct.event_timestamp(998) <= t <= acct.event_timestamp(1002))
    assert set(tied) <= set(want) and len(want) >= 7
    assert all_events(sim, f"/api/events?filter={near}&page[size]=1") == want
    assert all_events(sim, f"/api/events?filter={near}&page[size]=1&sort=-timestamp") == want[::-1]
    for eid in late + tied + over_http:
        r = get(sim, f"/api/events/{eid}?include=metric,profile")
        assert r.status_code == 200, eid
        body = r.json()
        assert not list(_validator("get_event").iter_errors(body))
        i = acct.event_index(eid)
        assert body["data"]["attributes"]["timestamp"] == acct.event_timestamp(i)
        assert body["data"]["relationships"]["metric"]["data"]["id"] == acct.event_metric_id(i)
    got = get(sim, f"/api/events/{late[0]}").json()["data"]["attributes"]
    assert abs(got["timestamp"] - (time.time() - 10 * 86400)) < 120
    assert get(sim, f"/api/events/{acct.event_id(base + 20)}").status_code == 404


def test_imports_keep_memory_flat_at_ten_million_events(make_sim):
    acct = Account(seed=7, events=10_000_000)
    sim = make_sim(acct)
    ids = acct.import_events(3, days_ago=30)
    ts = acct.event_timestamp(acct.event_index(ids[0]))
    fmt = dt.datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.perf_counter()
    seen = all_events(
        sim, f"/api/events?filter=and(greater-or-equal(datetime,{fmt}),less-or-equal(datetime,{fmt}))"
    )
    assert time.perf_counter() - started < 5
    seeded = [e for e in seen if e not in ids]
    assert seen[-3:] == ids and all(acct.event_index(e) < acct.total_events for e in seeded)
    assert len(acct.imported_timestamps) == 3


# -- 8. absent relationship data ------------------------------------------------------------------------------
def test_a_share_of_events_omit_relationship_data_unless_included(make_sim):
    acct = Account(seed=7, omit_relationship_data=True)
    sim = make_sim(acct)
    body = get(sim, "/api/events?page[size]=100").json()
    assert not list(_validator("get_events").iter_errors(body))
    omitted = 0
    for event in body["data"]:
        i = acct.event_index(event["id"])
        rels = event["relationships"]
        for rel in ("metric", "profile"):
            assert "links" in rels[rel]
            assert ("data" in rels[rel]) == (i % 5 != 0)
        omitted += i % 5 == 0
    assert 10 <= omitted <= 30
    body = get(sim, "/api/events?page[size]=100&include=metric").json()
    assert not list(_validator("get_events").iter_errors(body))
    for event in body["data"]:
        i = acct.event_index(event["id"])
        assert event["relationships"]["metric"]["data"]["id"] == acct.event_metric_id(i)
        assert ("data" in event["relationships"]["profile"]) == (i % 5 != 0)
    assert {m["id"] for m in body["included"]} == {
        e["relationships"]["metric"]["data"]["id"] for e in body["data"]
    }
    # Off by default.
    plain = get(make_sim(), "/api/events?page[size]=20").json()
    assert all("data" in e["relationships"]["metric"] for e in plain["data"])


def test_a_share_of_campaign_messages_omit_their_template_linkage(make_sim):
    acct = Account(seed=7, omit_relationship_data=True)
    sim = make_sim(acct)
    path = "/api/campaigns?filter=equals(messages.channel,'email')&include=campaign-messages"
    body = get(sim, path).json()
    assert not list(_validator("get_campaigns").iter_errors(body))
    linked = ["data" in m["relationships"]["template"] for m in body["included"]]
    assert any(linked) and not all(linked)
    bare = next(m for m in body["included"] if "data" not in m["relationships"]["template"])
    assert "links" in bare["relationships"]["template"]
    campaign = bare["relationships"]["campaign"]["data"]["id"]
    listed = get(sim, f"/api/campaigns/{campaign}/campaign-messages").json()
    assert not list(_validator("get_messages_for_campaign").iter_errors(listed))
    assert "data" not in listed["data"][0]["relationships"]["template"]
    asked = get(sim, f"/api/campaigns/{campaign}/campaign-messages?include=template").json()
    assert asked["data"][0]["relationships"]["template"]["data"]["type"] == "template"


# -- 9. metric filters Klaviyo refuses --------------------------------------------------------------------------
def test_a_metric_id_filter_on_a_custom_or_unknown_metric_is_refused(sim):
    acct = sim.account
    custom = acct.custom_metric_id
    assert custom and custom not in {m.id for m in acct.metrics}
    assert custom == Account(seed=7).custom_metric_id  # deterministic
    for bad in (custom, "NOPE42"):
        r = get(sim, f'/api/events?filter=equals(metric_id,"{bad}")')
        assert r.status_code == 400
        err = r.json()["errors"][0]
        assert err["code"] == "invalid" and err["source"] == {"parameter": "filter"}
        assert bad in err["detail"]
    assert get(sim, f'/api/events?filter=equals(metric_id,"{acct.metrics[0].id}")').status_code == 200


# -- 10. parameter tiers ------------------------------------------------------------------------------------------
def test_predictive_analytics_is_limited_at_the_m_tier(make_sim):
    assert operations()["get_profiles"].param_limits == {
        ("additional-fields[profile]", "predictive_analytics"): (10, 150)
    }
    # A 4-second burst window (the clock slowed 4x): 15 requests fit in one window on a loaded machine too.
    scale = 4.0
    sim = make_sim(rate_limits=True, time_scale=scale)
    path = "/api/profiles?page[size]=1&additional-fields[profile]="

    def next_window() -> None:
        time.sleep(scale - time.time() % scale + 0.01)

    def burst(extra: str) -> list[int]:
        next_window()
        return [get(sim, path + extra).status_code for _ in range(15)]

    codes = burst("subscriptions,predictive_analytics")
    assert codes[:10] == [200] * 10 and set(codes[10:]) == {429}
    assert burst("subscriptions") == [200] * 15  # L tier: 75 a window
    next_window()
    r = get(sim, path + "predictive_analytics")
    assert r.headers["RateLimit-Limit"] == "150"  # the headers describe the tier it is paced by
    assert get(sim, path + "subscriptions").headers["RateLimit-Limit"] == "750"


def test_predictive_analytics_steady_window_holds_150(make_sim):
    sim = make_sim(rate_limits=True, time_scale=0.05)  # 3 s steady window, 50 ms burst window
    path = "/api/profiles?page[size]=1&additional-fields[profile]=predictive_analytics"
    time.sleep(3 - time.time() % 3 + 0.01)
    ok = 0
    deadline = time.time() + 2.5
    while time.time() < deadline:
        ok += get(sim, path).status_code == 200
    assert 100 <= ok <= 150


# -- 11. several accounts, one per key ----------------------------------------------------------------------------
def test_each_key_reads_its_own_account(make_sim):
    default = Account(seed=7)
    kolkata = Account(seed=12, timezone="Asia/Kolkata")
    sim = make_sim(default, accounts={OTHER_KEY: kolkata}, rate_limits=True)
    assert sim.account_for(OTHER_KEY) is kolkata and sim.account_for(KEY) is default
    a = get(sim, "/api/accounts").json()["data"][0]
    b = get(sim, "/api/accounts", key=OTHER_KEY).json()["data"][0]
    assert (a["id"], a["attributes"]["timezone"]) == (default.account_id, "UTC")
    assert (b["id"], b["attributes"]["timezone"]) == (kolkata.account_id, "Asia/Kolkata")
    time.sleep(1 - time.time() % 1 + 0.01)
    flows_a = [get(sim, "/api/flows") for _ in range(3)]
    flows_b = [get(sim, "/api/flows", key=OTHER_KEY) for _ in range(3)]  # own windows: S tier, 3 a second
    assert [r.status_code for r in flows_a + flows_b] == [200] * 6
    assert get(sim, "/api/flows").status_code == 429
    assert {f["id"] for f in flows_a[0].json()["data"]} <= {f.id for f in default.flows}
    assert {f["id"] for f in flows_b[0].json()["data"]} <= {f.id for f in kolkata.flows}
    assert {r.account for r in sim.calls("get_flows")} == {default.account_id, kolkata.account_id}
    # Reports use the key's account and time zone.
    time.sleep(1.1)
    day = dt.date.today() - dt.timedelta(days=3)
    body = report_body("query_flow_series", kolkata, f"{day}T00:00:00", f"{day}T23:59:59")
    r = post(sim, "query_flow_series", body, key=OTHER_KEY)
    assert r.json()["data"]["attributes"]["date_times"] == [f"{day}T00:00:00+05:30"]
    # Admin hooks pick the account by key.
    r = requests.post(sim.url + f"/_sim/account?key={OTHER_KEY}", timeout=10)
    assert r.json()["ids"] == [kolkata.account_id]
    assert requests.post(sim.url + "/_sim/account", timeout=10).json()["ids"] == [default.account_id]
    before = default.flows[0].attributes["name"]
    touched = requests.post(sim.url + f"/_sim/touch?type=flow&n=1&key={OTHER_KEY}", timeout=10).json()["ids"]
    assert touched == [kolkata.flows[0].id] and "(edited" in kolkata.flows[0].attributes["name"]
    assert default.flows[0].attributes["name"] == before
    ids = requests.post(sim.url + f"/_sim/import_events?n=1&days_ago=1&key={OTHER_KEY}", timeout=10).json()[
        "ids"
    ]
    assert kolkata.event_index(ids[0]) is not None and len(default.imported_timestamps) == 0


# -- faults ------------------------------------------------------------------------------------------------------
def test_a_badrow_fault_breaks_one_report_result(sim):
    acct = sim.account
    day = dt.date.today() - dt.timedelta(days=2)
    body = report_body("query_form_series", acct, f"{day}T00:00:00", f"{day}T23:59:59")
    sim.faults.queue("badrow")
    broken = post(sim, "query_form_series", body).json()["data"]["attributes"]["results"]
    fine = post(sim, "query_form_series", body).json()["data"]["attributes"]["results"]
    assert "form_id" not in broken[0]["groupings"] and broken[1:] == fine[1:]
    assert all("form_id" in r["groupings"] for r in fine)
    with pytest.raises(ValueError, match="unknown faults"):
        sim.faults.queue("nonsense")
