"""Klaviyo system webhooks: the receiver over real HTTP (uvicorn on a free port), the inbox in real Postgres, the
drain into klaviyo_events through polling's transform and merge, the sensor, and the Webhooks API client.

Test deliveries are signed by this file's own reading of Klaviyo's guide ("Working with system webhooks", section
"HMAC signature verification"): HMAC-SHA256 keyed with the secret over the raw body followed by the
Klaviyo-Timestamp value as sent, hex. Timestamps are HTTP dates, as in the guide's example request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import logging
import socket
import threading
import time

import dagster as dg
import pytest
import requests
import uvicorn
from sqlalchemy import text

from assets.webhook_events import drain_inbox, webhook_events
from pipelines.webhook_sensor import klaviyo_webhook_sensor, webhook_events_job
from pipelines.webhooks import HEALTH_PATH, RECEIVE_PATH, create_app
from resources.ratelimit import XL
from resources.warehouse import inbox
from resources.webhooks import MAX_BODY_BYTES, TIMESTAMP_TOLERANCE, Malformed, NotAuthentic, read_delivery

UTC = dt.UTC
SECRET = "whsec-test-0123456789abcdef"
WEBHOOK_ID = "01KWEBHOOKTEST000000000000"
ACCOUNT = "AcctWH"
NOW = dt.datetime.now(UTC).replace(microsecond=0)


# -- Klaviyo's side, as its guide describes it ----------------------------------------------------------------
def klaviyo_signature(body: bytes, timestamp: str, secret: str = SECRET) -> str:
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
    digest.update(timestamp.encode("utf-8"))
    return digest.hexdigest()


def http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)


def event(i: int, when: dt.datetime | None = None, metric: str = "MetricA") -> dict:
    """An event resource shaped like GET /api/events/{id}'s `data`."""
    when = when or NOW - dt.timedelta(hours=1, minutes=i)
    return {
        "type": "event",
        "id": f"EVT{i:05d}",
        "attributes": {
            "timestamp": int(when.timestamp()),
            "event_properties": {"$value": 10.5 + i, "note": f"event {i}"},
            "datetime": when.isoformat(),
            "uuid": f"00000000-0000-4000-8000-{i:012d}",
        },
        "relationships": {
            "metric": {"data": {"type": "metric", "id": metric}},
            "profile": {"data": {"type": "profile", "id": f"PROF{i % 7}"}},
        },
        "links": {"self": f"https://a.klaviyo.com/api/events/EVT{i:05d}/"},
    }


def body_of(
    events: list[dict],
    topic: str = "event:klaviyo.opened_email",
    webhook_id: str = WEBHOOK_ID,
    account: str = ACCOUNT,
    payloads: list[dict] | None = None,
) -> bytes:
    """A delivery's body: `data` items (external_id, payload shaped like GET /api/events/{id}, topic), `meta`."""
    payloads = payloads or [{"data": e, "links": {"self": e["links"]["self"]}} for e in events]
    data = [{"external_id": p["data"]["id"], "payload": p, "topic": topic} for p in payloads]
    meta = {
        "klaviyo_account_id": account,
        "klaviyo_webhook_id": webhook_id,
        "timestamp": NOW.isoformat(),
        "version": "2026-07-15",
    }
    return json.dumps({"data": data, "meta": meta}).encode()


def headers_for(
    body: bytes, when: dt.datetime | None = None, webhook_id: str = WEBHOOK_ID, secret: str = SECRET
) -> dict[str, str]:
    stamp = http_date(when or dt.datetime.now(UTC))
    return {
        "Content-Type": "application/json",
        "Klaviyo-Webhook-Id": webhook_id,
        "Klaviyo-Signature": klaviyo_signature(body, stamp, secret),
        "Klaviyo-Timestamp": stamp,
    }


# -- the receiver over real HTTP --------------------------------------------------------------------------------
@contextlib.contextmanager
def serving(app):
    """`app` served by uvicorn on a free loopback port, in a thread; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def receiver(warehouse):
    with serving(create_app(warehouse, SECRET)) as url:
        yield url + RECEIVE_PATH


def post(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(url, data=body, headers=headers, timeout=30)


def counts(warehouse) -> dict[str, int]:
    with warehouse.engine.connect() as conn:
        return {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("klaviyo_webhook_deliveries", "klaviyo_webhook_inbox", "klaviyo_events")
        }


def inbox_rows(warehouse) -> dict[str, dict]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM klaviyo_webhook_inbox ORDER BY seq")).mappings().all()
    return {r["event_id"]: dict(r) for r in rows}


def event_rows(warehouse) -> list[dict]:
    with warehouse.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM klaviyo_events ORDER BY id")).mappings()]


NOTHING = {"klaviyo_webhook_deliveries": 0, "klaviyo_webhook_inbox": 0, "klaviyo_events": 0}


# -- verification, without HTTP -------------------------------------------------------------------------------
def test_a_delivery_signed_as_klaviyo_documents_is_read():
    body = body_of([event(1), event(2)])
    delivery = read_delivery(body, headers_for(body), SECRET)
    assert (delivery.webhook_id, delivery.account_id) == (WEBHOOK_ID, ACCOUNT)
    assert [e.event_id for e in delivery.events] == ["EVT00001", "EVT00002"]
    assert all(e.known_topic for e in delivery.events)
    # The header names are case-insensitive; the timestamp may also come as ISO 8601 or Unix seconds.
    for stamp in (NOW.isoformat(), str(int(NOW.timestamp())), http_date(NOW)):
        lower = {"klaviyo-webhook-id": WEBHOOK_ID, "klaviyo-timestamp": stamp,
                 "klaviyo-signature": klaviyo_signature(body, stamp).upper()}  # fmt: skip
        assert read_delivery(body, lower, SECRET, now=NOW).items == 2
    # The timestamp is signed as sent: the same instant spelled otherwise does not verify.
    signed = headers_for(body, NOW)
    with pytest.raises(NotAuthentic, match="does not match"):
        read_delivery(body, {**signed, "Klaviyo-Timestamp": NOW.isoformat()}, SECRET, now=NOW)
    # Signed over the body then the timestamp, not the other way round, not with a separator.
    stamp = http_date(NOW)
    for wrong in (
        hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256).hexdigest(),
        hmac.new(SECRET.encode(), body + b"." + stamp.encode(), hashlib.sha256).hexdigest(),
        hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
    ):
        with pytest.raises(NotAuthentic):
            read_delivery(body, {**signed, "Klaviyo-Signature": wrong}, SECRET, now=NOW)


def test_the_tolerance_is_five_minutes_either_way():
    assert TIMESTAMP_TOLERANCE.total_seconds() == 300
    body = body_of([event(1)])
    for offset, ok in ((-299, True), (299, True), (-301, False), (301, False)):
        sent = headers_for(body, NOW + dt.timedelta(seconds=offset))
        if ok:
            assert read_delivery(body, sent, SECRET, now=NOW).items == 1
        else:
            with pytest.raises(NotAuthentic, match="tolerance"):
                read_delivery(body, sent, SECRET, now=NOW)


def test_envelopes_klaviyo_would_not_send_are_refused_with_reasons():
    good = event(1)
    cases = {
        b"[]": "not a JSON object",
        json.dumps({"data": []}).encode(): "no `meta`",
        json.dumps({"meta": {"klaviyo_webhook_id": WEBHOOK_ID}, "data": []}).encode(): "klaviyo_account_id",
        body_of([good])[:-20]: "not JSON",
        json.dumps(
            {"meta": {"klaviyo_webhook_id": WEBHOOK_ID, "klaviyo_account_id": "A"}, "data": {"a": 1}}
        ).encode(): "not an array",
        body_of([], payloads=[{"data": {**good, "attributes": None}}]): "not an event",
        body_of([], payloads=[{"data": {**good, "id": "OTHER"}}]).replace(b'"external_id": "OTHER"', b'"external_id": "EVT00001"'): "external_id",
        b'{"meta": {"klaviyo_webhook_id": "' + WEBHOOK_ID.encode() + b'"}, "data": [NaN]}': "not JSON",
    }  # fmt: skip
    for body, reason in cases.items():
        with pytest.raises(Malformed, match=reason):
            read_delivery(body, headers_for(body), SECRET)


# -- the receiver: refusals write nothing -----------------------------------------------------------------------
def _raw_http(url: str, head: bytes, parts: list[bytes]) -> int:
    """Send a request by hand (so that a refused upload need not be sent whole) and read the status line the
    receiver answers while the rest is still being sent."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head)

        def send_rest() -> None:
            for part in parts:
                try:
                    conn.sendall(part)
                except OSError:
                    return  # the receiver answered and closed before the rest arrived

        sender = threading.Thread(target=send_rest, daemon=True)
        sender.start()
        answer = conn.makefile("rb").readline()
        sender.join(30)
    return int(answer.split()[1])


def test_requests_not_from_klaviyo_or_not_readable_are_refused_and_write_nothing(warehouse, receiver, caplog):
    caplog.set_level(logging.INFO, logger="klaviyo_pipeline.webhooks")
    body = body_of([event(1), event(2)])
    other_id = body_of([event(1)], webhook_id="01KOTHERWEBHOOK00000000000")
    not_json = b'{"data": [ {"external_id": '
    refusals = {
        "wrong signature": (body, {**headers_for(body), "Klaviyo-Signature": "0" * 64}, 401),
        "signed with another secret": (body, headers_for(body, secret="not-the-secret-0000"), 401),
        "no signature": (body, {k: v for k, v in headers_for(body).items() if k != "Klaviyo-Signature"}, 401),
        "no timestamp": (body, {k: v for k, v in headers_for(body).items() if k != "Klaviyo-Timestamp"}, 401),
        "body altered after signing": (body.replace(b"event 1", b"event 9"), headers_for(body), 401),
        "webhook id header differs from meta": (other_id, headers_for(other_id), 401),
        "stale timestamp": (body, headers_for(body, dt.datetime.now(UTC) - dt.timedelta(minutes=6)), 401),
        "future timestamp": (body, headers_for(body, dt.datetime.now(UTC) + dt.timedelta(minutes=6)), 401),
        "malformed JSON, signed": (not_json, headers_for(not_json), 400),
    }
    for name, (payload, headers, status) in refusals.items():
        answer = post(receiver, payload, headers)
        assert answer.status_code == status, (name, answer.text)
        assert SECRET not in answer.text and "event 1" not in answer.text
    assert requests.get(receiver, timeout=10).status_code == 405
    # Too big: refused on Content-Length before the body is read, and while it streams in (chunked).
    head = (
        f"POST {RECEIVE_PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n"
    ).encode()
    assert _raw_http(receiver, head, [b"{"]) == 413
    chunk = b" " * (1 << 20)
    chunked = f"POST {RECEIVE_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    frames = [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"] * (MAX_BODY_BYTES // len(chunk) + 2)
    assert _raw_http(receiver, chunked, [*frames, b"0\r\n\r\n"]) == 413
    assert counts(warehouse) == NOTHING
    # And the same delivery, signed as Klaviyo signs it, is taken.
    assert post(receiver, body, headers_for(body)).status_code == 200
    assert counts(warehouse)["klaviyo_webhook_inbox"] == 2
    # The log says what was refused and why; never the secret or the body.
    logged = caplog.text
    assert logged.count("refused a webhook request") == len(refusals) + 2
    assert "401 Klaviyo-Signature does not match" in logged and "400 the body is not JSON" in logged
    assert "2 events stored (2 new" in logged
    for secret_or_body in (SECRET, "event 1", '"external_id"', "EVT00001"):
        assert secret_or_body not in logged


def test_a_smaller_limit_refuses_a_signed_body_over_it(warehouse):
    body = body_of([event(i) for i in range(30)])
    with serving(create_app(warehouse, SECRET, max_body_bytes=len(body) - 1)) as url:
        answer = post(url + RECEIVE_PATH, body, headers_for(body))
        assert answer.status_code == 413
        ok = body_of([event(1)])
        assert post(url + RECEIVE_PATH, ok, headers_for(ok)).status_code == 200
    assert counts(warehouse)["klaviyo_webhook_inbox"] == 1


def test_a_delivery_is_stored_and_answered_after_the_commit(warehouse, receiver):
    body = body_of([event(1), event(2), event(2)])  # an event repeated within a delivery is one event
    answer = post(receiver, body, headers_for(body))
    assert answer.status_code == 200
    assert answer.json() == {"delivery": answer.json()["delivery"], "events": 2, "new": 2, "repeated": 0,
                             "unknown_topic": 0}  # fmt: skip
    rows = inbox_rows(warehouse)
    assert list(rows) == ["EVT00001", "EVT00002"]
    first = rows["EVT00001"]
    assert (first["account_id"], first["webhook_id"], first["topic"]) == (
        ACCOUNT,
        WEBHOOK_ID,
        "event:klaviyo.opened_email",
    )
    assert first["payload"]["data"] == event(1) and first["unknown_topic"] is False
    assert first["loaded_at"] is None and first["deliveries"] == 1
    with warehouse.engine.connect() as conn:
        delivery = conn.execute(text("SELECT * FROM klaviyo_webhook_deliveries")).mappings().one()
    assert (delivery["items"], delivery["new_events"], delivery["repeated_events"]) == (3, 2, 0)
    assert delivery["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert delivery["meta"]["klaviyo_webhook_id"] == WEBHOOK_ID


def test_an_unknown_topic_is_stored_flagged_and_never_loaded(warehouse, receiver):
    other = {"data": {"type": "profile", "id": "PROF1", "attributes": {"email": "a@example.com"}}}
    body = json.dumps(
        {
            "data": [
                {"external_id": "X1", "topic": "profile:klaviyo.updated", "payload": other},
                {
                    "external_id": "EVT00001",
                    "topic": "event:klaviyo.clicked_sms",
                    "payload": {"data": event(1)},
                },
            ],
            "meta": {
                "klaviyo_account_id": ACCOUNT,
                "klaviyo_webhook_id": WEBHOOK_ID,
                "timestamp": NOW.isoformat(),
            },
        }
    ).encode()
    answer = post(receiver, body, headers_for(body))
    assert answer.status_code == 200 and answer.json()["unknown_topic"] == 1
    rows = inbox_rows(warehouse)
    assert rows["X1"]["unknown_topic"] is True and rows["X1"]["payload"] == other
    assert rows["EVT00001"]["unknown_topic"] is False
    outcome = drain_inbox(warehouse)
    assert outcome.loaded == 1 and not outcome.rejected
    rows = inbox_rows(warehouse)
    assert rows["X1"]["loaded_at"] is None and rows["EVT00001"]["loaded_at"] is not None
    assert [r["id"] for r in event_rows(warehouse)] == ["EVT00001"]
    with warehouse.engine.connect() as conn:
        assert inbox.pending_summary(conn).count == 0


def test_redelivery_is_one_row_before_and_after_the_load(warehouse, receiver):
    events = [event(i) for i in range(5)]
    body = body_of(events)
    first = post(receiver, body, headers_for(body)).json()
    again = post(receiver, body, headers_for(body, dt.datetime.now(UTC) + dt.timedelta(seconds=1))).json()
    assert (first["new"], again["new"], again["repeated"]) == (5, 0, 5)
    rows = inbox_rows(warehouse)
    assert len(rows) == 5 and {r["deliveries"] for r in rows.values()} == {2}
    assert {r["last_delivery_id"] for r in rows.values()} == {again["delivery"]}
    assert drain_inbox(warehouse).loaded == 5
    loaded = event_rows(warehouse)
    assert len(loaded) == 5
    # Klaviyo sends it once more after the load: counted, not pending again, nothing new in klaviyo_events.
    overlap = body_of(events[3:] + [event(9)])
    assert post(receiver, overlap, headers_for(overlap)).json()["new"] == 1
    outcome = drain_inbox(warehouse)
    assert outcome.loaded == 1 and outcome.counts.inserted == 1
    assert len(event_rows(warehouse)) == 6
    assert counts(warehouse)["klaviyo_webhook_deliveries"] == 3


def test_events_land_as_polling_loads_them(warehouse, receiver):
    body = body_of([event(1), event(2, metric="MetricB")])
    post(receiver, body, headers_for(body))
    outcome = drain_inbox(warehouse)
    assert (outcome.loaded, outcome.counts.inserted) == (2, 2)
    first = event_rows(warehouse)[0]
    assert (first["id"], first["account_id"], first["metric_id"], first["profile_id"]) == (
        "EVT00001",
        ACCOUNT,
        "MetricA",
        "PROF1",
    )
    assert first["value"] == 11.5 and first["event_properties"]["note"] == "event 1"
    assert first["datetime"] == dt.datetime.fromisoformat(event(1)["attributes"]["datetime"])
    assert first["uuid"] == event(1)["attributes"]["uuid"]


def test_a_crash_between_receipt_and_load_loses_nothing_and_duplicates_nothing(
    warehouse, receiver, monkeypatch
):
    events = [
        event(i, when=NOW - dt.timedelta(days=40 * (i % 2), minutes=i)) for i in range(12)
    ]  # two months
    body = body_of(events)
    assert post(receiver, body, headers_for(body)).status_code == 200
    # The receiver committed; no drain ran (the process died): everything is pending.
    with warehouse.engine.connect() as conn:
        assert inbox.pending_summary(conn).count == 12
    # A drain that dies after its merge, before the batch is marked loaded: the batch's transaction rolls back.
    real_mark = inbox.mark_loaded
    monkeypatch.setattr(inbox, "mark_loaded", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError, match="killed"):
        drain_inbox(warehouse, batch_rows=5)
    assert counts(warehouse)["klaviyo_events"] == 0
    # A drain that dies in its second batch: the first batch is loaded and marked, the rest stays pending.
    monkeypatch.setattr(inbox, "mark_loaded", real_mark)
    real_upsert = type(warehouse).upsert_frame
    calls = []

    def upsert_then_die(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed in batch 2")
        return real_upsert(self, *args, **kwargs)

    monkeypatch.setattr(type(warehouse), "upsert_frame", upsert_then_die)
    with pytest.raises(RuntimeError, match="batch 2"):
        drain_inbox(warehouse, batch_rows=5)
    assert counts(warehouse)["klaviyo_events"] == 5
    with warehouse.engine.connect() as conn:
        assert inbox.pending_summary(conn).count == 7
    # The next drain loads the rest once; a redelivery meanwhile changes nothing.
    monkeypatch.setattr(type(warehouse), "upsert_frame", real_upsert)
    post(receiver, body, headers_for(body))
    outcome = drain_inbox(warehouse, batch_rows=5)
    assert outcome.loaded == 7 and outcome.counts.inserted == 7
    rows = event_rows(warehouse)
    assert sorted(r["id"] for r in rows) == sorted(e["id"] for e in events)
    assert drain_inbox(warehouse).batches == 0


def test_a_rejected_event_leaves_the_pending_set_with_its_reason(warehouse, receiver):
    bad = event(3)
    bad["attributes"]["datetime"] = "not a time"
    body = body_of([event(1), bad])
    post(receiver, body, headers_for(body))
    outcome = drain_inbox(warehouse)
    assert outcome.loaded == 1 and set(outcome.rejected) == {"EVT00003"}
    assert "unparseable datetime" in inbox_rows(warehouse)["EVT00003"]["load_error"]
    assert drain_inbox(warehouse).batches == 0


def test_a_webhook_event_and_the_same_event_polled_are_one_row(warehouse, receiver, sim, client_for):
    from assets.sync import SyncRequest, sync_entity

    client = client_for(sim, rate_time_scale=0.01)
    start = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + dt.timedelta(days=1)
    listed = next(p for p in client.list_window("events", start, end) if p.records).records[:4]
    assert listed
    # What Klaviyo pushes: each event as GET /api/events/{id} answers.
    payloads = [
        client.request("GET", f"{sim.url}/api/events/{r['id']}", limits=[("events-get", XL)]) for r in listed
    ]
    account = sim.account.account_id
    early, late = payloads[:2], payloads[2:]
    # Webhook first, then polling.
    body = body_of([], account=account, payloads=early)
    assert post(receiver, body, headers_for(body)).status_code == 200
    assert drain_inbox(warehouse).counts.inserted == 2
    polled = sync_entity(SyncRequest("events", start, end, full_refresh=True), client, warehouse)
    assert polled.records_read >= 4
    # Polling first (above), then the webhook: the drain finds the rows there already.
    body = body_of([], account=account, payloads=late)
    assert post(receiver, body, headers_for(body)).status_code == 200
    outcome = drain_inbox(warehouse)
    assert (outcome.loaded, outcome.counts.inserted, outcome.counts.updated) == (2, 0, 0)
    with warehouse.engine.connect() as conn:
        per_id = dict(
            conn.execute(
                text(
                    "SELECT id, count(*) FROM klaviyo_events WHERE account_id = :a AND id = ANY(:ids) GROUP BY id"
                ),
                {"a": account, "ids": [r["id"] for r in listed]},
            ).all()
        )
        total = conn.execute(text("SELECT count(*) FROM klaviyo_events")).scalar_one()
    assert per_id == {r["id"]: 1 for r in listed}
    assert total == polled.records_read  # the webhook's events added no row of their own


# -- Dagster: the asset, the sensor, the definitions ----------------------------------------------------------
def test_the_drain_asset_and_the_sensor(warehouse, receiver, monkeypatch):
    import pipelines.webhook_sensor

    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, resources={"warehouse": warehouse})
    assert isinstance(klaviyo_webhook_sensor(context), dg.SkipReason)  # nothing pending
    body = body_of([event(i) for i in range(3)])
    post(receiver, body, headers_for(body))
    # Events seconds old are the receiver's to load; the sensor asks only once they wait longer.
    young = klaviyo_webhook_sensor(context)
    assert isinstance(young, dg.SkipReason) and "the receiver loads them" in young.skip_message
    monkeypatch.setattr(pipelines.webhook_sensor, "GRACE_SECONDS", 0)
    result = klaviyo_webhook_sensor(context)
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.run_key.startswith("webhook-inbox:") and request.tags["klaviyo/pending_events"] == "3"
    # The same pending events are not asked for again at once.
    again = dg.build_sensor_context(
        instance=instance, resources={"warehouse": warehouse}, cursor=result.cursor
    )
    assert isinstance(klaviyo_webhook_sensor(again), dg.SkipReason)

    materialized = dg.materialize([webhook_events], resources={"warehouse": warehouse}, instance=instance)
    assert materialized.success
    meta = materialized.asset_materializations_for_node("klaviyo__webhook_events")[0].metadata
    assert meta["events_loaded"].value == 3 and meta["events_pending"].value == 0
    assert meta["dagster/row_count"].value == 3
    assert isinstance(klaviyo_webhook_sensor(again), dg.SkipReason)


def test_the_definitions_carry_the_drain_its_job_and_its_sensor():
    from pipelines.definitions import defs

    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "klaviyo/webhook_events" in keys
    assert defs.resolve_job_def(webhook_events_job.name).name == "klaviyo_webhook_events"
    sensor = defs.resolve_sensor_def("klaviyo_webhook_sensor")
    assert sensor.minimum_interval_seconds == 5


def test_health_and_the_bi_role(warehouse):
    with serving(create_app(warehouse, SECRET)) as url:
        assert requests.get(url + HEALTH_PATH, timeout=10).json() == {"status": "ok"}
    with warehouse.engine.connect() as conn:
        if conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi'")).first():
            for table in ("klaviyo_webhook_inbox", "klaviyo_webhook_deliveries", "klaviyo_events"):
                allowed = conn.execute(
                    text("SELECT has_table_privilege('klaviyo_bi', :t, 'SELECT')"), {"t": table}
                ).scalar_one()
                assert allowed is (table == "klaviyo_events"), table


# -- the Webhooks API client, against a stand-in that answers as the spec says --------------------------------
class FakeWebhooksApi:
    """/api/webhooks and /api/webhook-topics as the OpenAPI spec (2026-07-15) shapes them, recording requests;
    a stand-in until the simulator serves them."""

    TOPICS = ["event:klaviyo.opened_email", "event:klaviyo.clicked_email", "event:klaviyo.sent_sms"]

    def __init__(self, refuse: bool = False):
        self.hooks: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.refuse = refuse

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        def resource(hook_id):
            hook = self.hooks[hook_id]
            return {
                "type": "webhook",
                "id": hook_id,
                "attributes": {k: hook[k] for k in ("name", "description", "endpoint_url", "enabled")},
                "relationships": {"webhook-topics": {"data": [{"type": "webhook-topic", "id": t} for t in hook["topics"]]}},
                "links": {"self": f"/api/webhooks/{hook_id}"},
            }  # fmt: skip

        async def handle(request):
            body = json.loads(await request.body() or b"null")
            self.requests.append((request.method, request.url.path, body))
            if self.refuse:
                error = {"id": "x", "status": 403, "code": "permission_denied", "title": "Forbidden",
                         "detail": "You do not have permission to perform this action."}  # fmt: skip
                return JSONResponse(
                    {"errors": [error]}, status_code=403, media_type="application/vnd.api+json"
                )
            path, hook_id = request.url.path, request.path_params.get("hook_id")
            if path == "/api/webhook-topics":
                data = [{"type": "webhook-topic", "id": t, "links": {"self": ""}} for t in self.TOPICS]
                return JSONResponse({"data": data, "links": {"self": "", "next": None}})
            if request.method == "GET" and hook_id is None:
                return JSONResponse({"data": [resource(h) for h in self.hooks], "links": {"next": None}})
            if request.method == "POST":
                hook_id = f"01HOOK{len(self.hooks):020d}"
                attrs = body["data"]["attributes"]
                topics = [t["id"] for t in body["data"]["relationships"]["webhook-topics"]["data"]]
                self.hooks[hook_id] = {
                    **attrs,
                    "description": attrs.get("description"),
                    "enabled": True,
                    "topics": topics,
                }
                return JSONResponse({"data": resource(hook_id)}, status_code=201)
            if request.method == "PATCH":
                attrs = body["data"]["attributes"]
                self.hooks[hook_id].update({k: v for k, v in attrs.items()})
                rel = (body["data"].get("relationships") or {}).get("webhook-topics")
                if rel is not None:
                    self.hooks[hook_id]["topics"] = [t["id"] for t in rel["data"]]
                return JSONResponse({"data": resource(hook_id)})
            if request.method == "DELETE":
                del self.hooks[hook_id]
                return Response(status_code=204)
            return JSONResponse({"errors": []}, status_code=404)

        return Starlette(
            routes=[
                Route("/api/webhook-topics", handle, methods=["GET"]),
                Route("/api/webhooks", handle, methods=["GET", "POST"]),
                Route("/api/webhooks/{hook_id}", handle, methods=["GET", "PATCH", "DELETE"]),
            ]
        )


def test_register_creates_then_updates_lists_and_deletes(tmp_path):
    from resources.klaviyo import KlaviyoClient
    from resources.webhooks import UnknownTopics, WebhookAccessError, WebhooksApi
    from tests.conftest import TEST_KEY

    fake = FakeWebhooksApi()
    with serving(fake.app()) as url:
        client = KlaviyoClient(TEST_KEY, base_url=url, backoff_base=0.01, rate_time_scale=0.01)
        api = WebhooksApi(client)
        target = "https://hooks.example.com/klaviyo/webhooks"
        hook, created = api.register("klaviyo-pipeline", target, SECRET, ["event:klaviyo.opened_email"])
        assert created and hook.topics == ("event:klaviyo.opened_email",)
        method, path, sent = fake.requests[-1]
        assert (method, path) == ("POST", "/api/webhooks")
        assert sent["data"]["type"] == "webhook"
        assert sent["data"]["attributes"] == {
            "name": "klaviyo-pipeline",
            "endpoint_url": target,
            "secret_key": SECRET,
        }
        assert sent["data"]["relationships"] == {
            "webhook-topics": {"data": [{"type": "webhook-topic", "id": "event:klaviyo.opened_email"}]}
        }
        # Registering again under the same name updates that webhook: URL, secret, topics, enabled.
        again, created = api.register("klaviyo-pipeline", target, "new-secret-0123456789",
                                      ["event:klaviyo.opened_email", "event:klaviyo.sent_sms"])  # fmt: skip
        assert not created and again.id == hook.id
        method, path, sent = fake.requests[-1]
        assert (method, path) == ("PATCH", f"/api/webhooks/{hook.id}")
        assert sent["data"]["id"] == hook.id and sent["data"]["attributes"]["enabled"] is True
        assert [w.topics for w in api.list_webhooks()] == [
            ("event:klaviyo.opened_email", "event:klaviyo.sent_sms")
        ]
        with pytest.raises(UnknownTopics, match="event:klaviyo.nope"):
            api.register("klaviyo-pipeline", target, SECRET, ["event:klaviyo.nope"])
        with pytest.raises(ValueError, match="https"):
            api.register("klaviyo-pipeline", "http://hooks.example.com/x", SECRET, ["event:klaviyo.sent_sms"])
        api.delete(hook.id)  # 204, no body
        assert api.list_webhooks() == [] and fake.requests[-2][0] == "DELETE"
        client.close()
        fake.refuse = True
        client = KlaviyoClient(TEST_KEY, base_url=url, backoff_base=0.01, rate_time_scale=0.01)
        with pytest.raises(WebhookAccessError, match="Advanced KDP") as refused:
            WebhooksApi(client).list_webhooks()
        assert "webhooks:read" in str(refused.value) and SECRET not in str(refused.value)
        client.close()


def test_the_cli_refuses_what_klaviyo_would(monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.delenv("KLAVIYO_WEBHOOK_SECRET", raising=False)
    for argv in (
        [
            "webhooks",
            "register",
            "--url",
            "https://x.example.com/klaviyo/webhooks",
            "--topics",
            "event:klaviyo.sent_sms",
        ],
        ["webhooks", "serve", "--port", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2 and "KLAVIYO_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("KLAVIYO_WEBHOOK_SECRET", SECRET)
    with pytest.raises(SystemExit) as exited:
        main(["webhooks", "register", "--url", "http://x.example.com/", "--topics", "event:klaviyo.sent_sms"])
    assert exited.value.code == 2 and "https" in capsys.readouterr().err


# -- the commands against the simulator (which serves /api/webhooks and /api/webhook-topics) -------------------
def test_the_cli_registers_lists_and_deletes_against_the_simulator(sim, monkeypatch, tmp_path, capsys):
    from pipelines.cli import main
    from resources.klaviyo import KlaviyoClient
    from resources.webhooks import WebhookAccessError, WebhooksApi
    from tests.conftest import TEST_KEY

    for name, value in {
        "KLAVIYO_API_KEY": TEST_KEY,
        "KLAVIYO_BASE_URL": sim.url,
        "KLAVIYO_RATE_TIME_SCALE": "0.01",
        "KLAVIYO_WEBHOOK_SECRET": SECRET,
        "KLAVIYO_PIPELINE_HOME": str(tmp_path / "state"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }.items():
        monkeypatch.setenv(name, value)

    def cli(*argv: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exited:
            main(["webhooks", *argv])
        out = capsys.readouterr()
        # The first line says which account is read (as every command that talks to Klaviyo does).
        assert out.out.startswith("klaviyo: reading the account behind KLAVIYO_API_KEY")
        return exited.value.code, out.out.split("\n", 1)[1], out.err

    client = KlaviyoClient(TEST_KEY, base_url=sim.url, rate_time_scale=0.01)
    topics = WebhooksApi(client).list_topics()
    assert len(topics) >= 2 and all(t.startswith("event:") for t in topics)
    url = "https://hooks.example.com/klaviyo/webhooks"
    code, out, _ = cli("register", "--url", url, "--topics", topics[0])
    assert code == 0 and out.startswith("created webhook ")
    hook_id = out.split()[2]
    code, out, _ = cli("register", "--url", url, "--topics", topics[0], topics[1])
    assert code == 0 and out.startswith(f"updated webhook {hook_id} ")
    code, _, err = cli("register", "--url", url, "--topics", "event:klaviyo.no_such_metric")
    assert code == 2 and "not topics of this account: event:klaviyo.no_such_metric" in err
    code, out, _ = cli("list")
    assert code == 0 and hook_id in out and topics[0] in out and topics[1] in out and "1 webhook(s)" in out
    assert SECRET not in out
    [listed] = WebhooksApi(client).list_webhooks()
    assert (listed.id, listed.name, listed.enabled, set(listed.topics)) == (
        hook_id, "klaviyo-pipeline", True, {topics[0], topics[1]},
    )  # fmt: skip
    code, out, _ = cli("delete", hook_id)
    assert (code, out.strip()) == (0, f"deleted webhook {hook_id}")
    assert WebhooksApi(client).list_webhooks() == []
    # A key without the webhook scopes: one clear line, exit status 1.
    sim.set_scopes(TEST_KEY, {"accounts:read", "events:read"})
    code, _, err = cli("list")
    assert code == 1 and "webhooks:read" in err and "Advanced KDP" in err
    with pytest.raises(WebhookAccessError):
        WebhooksApi(client).list_topics()
    client.close()
