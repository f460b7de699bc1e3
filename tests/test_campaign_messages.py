"""Campaign messages: read with their campaigns (`include=campaign-messages`), landed in their own table."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import text

from assets.reconcile import reconcile_deletions
from assets.sync import SyncRequest, sync_entity
from assets.transform import transform_included
from klaviyo_sim.data import iso
from resources.klaviyo_api import parse_timestamp
from tests.test_pipeline import busiest_day, defs_for, mat_metadata, run, sim_stamp

UTC = dt.UTC


def campaign(cid: str, *message_ids: str) -> dict:
    return {
        "type": "campaign",
        "id": cid,
        "attributes": {"name": cid},
        "relationships": {
            "campaign-messages": {"data": [{"type": "campaign-message", "id": m} for m in message_ids]}
        },
    }


def message(mid: str, definition, send_times=(), campaign_id: str | None = None, **attrs) -> dict:
    relationships = {"template": {"links": {"related": "..."}}}
    if campaign_id:
        relationships["campaign"] = {"data": {"type": "campaign", "id": campaign_id}}
    return {
        "type": "campaign-message",
        "id": mid,
        "attributes": {
            "definition": definition,
            "send_times": list(send_times),
            "created_at": "2026-03-01T10:00:00+00:00",
            "updated_at": "2026-03-02T10:00:00Z",
            **attrs,
        },
        "relationships": relationships,
        "links": {"self": f"https://a.klaviyo.com/api/campaign-messages/{mid}/"},
    }


def typed_rows(frame: pd.DataFrame) -> dict[str, dict]:
    """The frame's rows by id, missing values as None."""
    return {
        r["id"]: {k: None if not isinstance(v, dict | list) and pd.isna(v) else v for k, v in r.items()}
        for r in frame.to_dict("records")
    }


def test_messages_of_every_channel_become_typed_rows():
    email = {
        "channel": "email",
        "label": "Spring",
        "content": {
            "subject": "Sale \u0000 🎉",
            "preview_text": "Hi",
            "from_email": "a@b.c",
            "from_label": "Shop",
        },
    }
    sms = {"channel": "sms", "content": {"body": "Text STOP to stop", "media_url": None}}
    push = {"channel": "mobile_push", "notification_type": "standard", "content": {"title": "T", "body": "B"}}
    times = [
        {"datetime": "2026-03-05T12:00:00+00:00", "is_local": False},
        {"datetime": "2026-03-04 08:00:00+02:00", "is_local": True},  # the earliest, Klaviyo's space form
    ]
    records = [campaign("C1", "M1"), campaign("C2", "M2"), campaign("C3", "M3")]
    included = [
        message("M1", email, times, campaign_id="C1"),
        message("M2", sms),  # no campaign data of its own: the campaign listing it says
        message("M3", push, campaign_id="C3"),
        message("M9", email, campaign_id="C9"),  # listed by no record of the batch (out of the window)
        {"type": "tag", "id": "T1", "attributes": {"name": "x"}},
        "not a resource",
    ]
    result = transform_included("campaign-message", records, included, "acct")
    assert result.rejected == []
    rows = typed_rows(result.frame)
    assert set(rows) == {"M1", "M2", "M3"}
    m1, m2, m3 = rows["M1"], rows["M2"], rows["M3"]
    assert (m1["campaign_id"], m1["channel"], m1["label"], m1["subject"]) == (
        "C1",
        "email",
        "Spring",
        "Sale \u0000 🎉",
    )
    assert (m1["preview_text"], m1["from_email"], m1["from_label"], m1["body"]) == (
        "Hi",
        "a@b.c",
        "Shop",
        None,
    )
    assert m1["send_time"] == dt.datetime(2026, 3, 4, 6, tzinfo=UTC) and m1["send_time_is_local"] is True
    assert m1["updated_date"] == dt.datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert m1["metadata"]["attributes"]["send_times"] == times  # every send time kept
    assert "links" not in m1["metadata"] and "_sync" not in m1["metadata"]
    assert (m2["campaign_id"], m2["channel"], m2["body"], m2["subject"]) == (
        "C2",
        "sms",
        "Text STOP to stop",
        None,
    )
    assert m2["send_time"] is None and m2["send_time_is_local"] is None  # not scheduled
    assert (m3["campaign_id"], m3["title"], m3["body"]) == ("C3", "T", "B")


def test_odd_messages_are_rejected_or_land_with_nulls():
    records = [campaign("C1", "M1", "M2", "M3", "M4")]
    included = [
        message("M1", None),  # no definition: a row with NULL content
        message("M2", {"channel": "email", "content": "not an object"}),
        message("M3", {"channel": "email"}, [{"datetime": "next tuesday", "is_local": False}]),
        message("M4", {"channel": "email"}, ["not an object", {"is_local": True}]),
        {"type": "campaign-message", "id": "M5"},  # not listed, no attributes: dropped with the unlisted
    ]
    result = transform_included("campaign-message", records, included, "acct")
    rows = typed_rows(result.frame)
    assert set(rows) == {"M1", "M2", "M4"}
    assert rows["M1"]["channel"] is None and rows["M1"]["campaign_id"] == "C1"
    assert rows["M2"]["subject"] is None
    assert [(r.id, "next tuesday" in r.reason) for r in result.rejected] == [("M3", True)]


def messages(warehouse) -> dict[str, dict]:
    with warehouse.engine.connect() as conn:
        result = conn.execute(text("SELECT * FROM klaviyo_campaign_messages ORDER BY id"))
        return {r.id: dict(r._mapping) for r in result}


def sim_messages(account, campaigns=None) -> dict[str, tuple[str, object]]:
    """The simulator's messages by id: (campaign id, message resource)."""
    out = {}
    for c in campaigns if campaigns is not None else account.campaigns:
        for kind, mid in c.relationships["campaign-messages"]:
            out[mid] = (c.id, account.by_id[(kind, mid)])
    return out


def test_a_campaigns_sync_lands_their_messages_and_a_rerun_changes_nothing(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    outcome = sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    want = sim_messages(sim.account)
    got = messages(warehouse)
    assert set(got) == set(want)
    assert outcome.included["klaviyo_campaign_messages"].inserted == len(want)
    for mid, (cid, resource) in want.items():
        row, definition = got[mid], resource.attributes["definition"]
        content = definition.get("content") or {}
        assert (row["campaign_id"], row["channel"]) == (cid, definition["channel"])
        assert row["subject"] == content.get("subject") and row["body"] == content.get("body")
        assert row["title"] == content.get("title") and row["label"] == definition.get("label")
        times = resource.attributes["send_times"]
        assert row["send_time"] == (parse_timestamp(times[0]["datetime"]) if times else None)
        assert row["updated_date"] == parse_timestamp(resource.attributes["updated_at"])
        assert row["metadata"]["attributes"]["definition"] == definition
        assert row["account_id"] == sim.account.account_id
    assert {r["channel"] for r in got.values()} == {"email", "sms", "mobile_push"}
    requests_before = len(sim.calls())

    again = sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    counts = again.included["klaviyo_campaign_messages"]
    assert (counts.inserted, counts.updated, counts.skipped) == (0, 0, len(want))
    assert messages(warehouse) == got
    # One listing per channel and archived pass, as without messages: no request per campaign.
    assert {c.operation for c in sim.calls()[requests_before:]} == {"get_campaigns"}

    # Klaviyo edits a message (and its campaign): the next sync updates the row; an older copy never wins.
    edited = sim.account.campaigns[0]
    _, resource = want[edited.relationships["campaign-messages"][0][1]]
    later = dt.datetime.now(UTC).replace(microsecond=0)
    resource.attributes["definition"]["content"]["subject"] = "Edited subject"
    resource.attributes["updated_at"] = iso(later)
    edited.attributes["updated_at"] = iso(later)
    sync_entity(SyncRequest("campaigns", later - dt.timedelta(hours=1), None), client, warehouse)
    assert messages(warehouse)[resource.id]["subject"] == "Edited subject"
    resource.attributes["definition"]["content"]["subject"] = "Stale copy"
    resource.attributes["updated_at"] = iso(later - dt.timedelta(days=1))
    sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    assert messages(warehouse)[resource.id]["subject"] == "Edited subject"


def test_a_partition_lands_only_the_messages_of_its_campaigns(sim, warehouse):
    defs = defs_for(sim, warehouse)
    day = busiest_day(sim, "campaigns")
    result = run(defs, "klaviyo_sync_campaigns", partition=day)
    assert result.success
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    in_window = [
        c for c in sim.account.campaigns if start <= sim_stamp(c, "campaigns") < start + dt.timedelta(days=1)
    ]
    assert in_window
    assert set(messages(warehouse)) == set(sim_messages(sim.account, in_window))
    meta = mat_metadata(result, "campaigns")
    assert meta["campaign_messages_inserted"] == len(in_window)
    assert meta["rows_inserted"] == len(in_window) and meta["records_rejected"] == 0


def test_a_deleted_campaigns_messages_are_soft_deleted(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    sync_entity(SyncRequest("campaigns", None, None, full_refresh=True), client, warehouse)
    doomed = set(sim_messages(sim.account, sim.account.campaigns[-2:]))
    sim.account.delete("campaign", 2)
    reconcile_deletions("campaigns", client, warehouse)
    rows = messages(warehouse)
    assert {mid for mid, r in rows.items() if r["deleted_at"] is not None} == doomed and doomed
    assert len(rows) == len(sim_messages(sim.account)) + len(doomed)
