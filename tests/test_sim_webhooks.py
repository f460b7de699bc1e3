"""The simulator's system webhooks: /api/webhooks and /api/webhook-topics over real HTTP (envelopes validated
against the OpenAPI response schemas), and delivery of new events to a local receiver: signatures checked by
an independent implementation written from Klaviyo's docs, batching, retries, and every fault option."""

from __future__ import annotations

import collections
import datetime as dt
import email.utils
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from klaviyo_sim import Account, RetryPolicy, WebhookFaults, WebhookService, signed_delivery
from klaviyo_sim.spec import operations
from tests.test_simulator import HEADERS, KEY, _validator

SECRET = "s3cret-key-of-32-characters-long"
WRITE = {**HEADERS, "Content-Type": "application/vnd.api+json"}


# -- an independent receiver, written from "Working with system webhooks" --------------------------------------
def verify(body: bytes, headers: dict[str, str], secret: str) -> bool:
    """Klaviyo's check: HMAC-SHA256 with the secret over the raw body, then the Klaviyo-Timestamp header; hex;
    and the body's meta.klaviyo_webhook_id equals the Klaviyo-Webhook-Id header."""
    computed = hmac.new(secret.encode("utf-8"), body, hashlib.sha256)
    computed.update(headers["Klaviyo-Timestamp"].encode())
    if not hmac.compare_digest(computed.hexdigest(), headers.get("Klaviyo-Signature", "")):
        return False
    return json.loads(body)["meta"]["klaviyo_webhook_id"] == headers["Klaviyo-Webhook-Id"]


class Receiver:
    """A tiny endpoint: records every request; answers 401 when `verify` fails (given a secret), else the next
    scripted status (200 when the script is empty), after `delay` seconds."""

    def __init__(self, secret: str | None = SECRET, statuses=(), delay: float = 0.0):
        self.secret = secret
        self.statuses = collections.deque(statuses)
        self.delay = delay
        self.received: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = dict(self.headers.items())
                with receiver.lock:
                    valid = receiver.secret is None or verify(body, headers, receiver.secret)
                    status = (receiver.statuses.popleft() if receiver.statuses else 200) if valid else 401
                    receiver.received.append(
                        {
                            "path": self.path,
                            "headers": headers,
                            "body": body,
                            "valid": valid,
                            "at": time.time(),
                        }
                    )
                time.sleep(receiver.delay)
                with_body = b"{}"
                self.send_response(status)
                self.send_header("Content-Length", str(len(with_body)))
                self.end_headers()
                self.wfile.write(with_body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/klaviyo?x=1"

    def documents(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received]


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.httpd.shutdown()
        r.httpd.server_close()


@pytest.fixture
def hooked(make_sim, receiver):
    """A simulator with fast, small-batch delivery, and a receiver; returns (sim, receiver, webhook)."""

    def make(service: WebhookService | None = None, topics=None, account: Account | None = None, **kwargs):
        service = service or WebhookService(max_batch=50, linger=0.05, time_scale=0.001)
        sim = make_sim(account or Account(seed=7), webhooks=service)
        rec = receiver(**kwargs)
        hook = service.create(sim.account, "warehouse", rec.url, SECRET, topics)
        return sim, rec, hook

    return make


def api(sim, method: str, path: str, body: dict | None = None, headers=WRITE):
    return requests.request(method, sim.url + path, headers=headers, json=body, timeout=10)


def create_body(topics: list[str], url: str, **attrs) -> dict:
    attributes = {"name": "Warehouse", "endpoint_url": url, "secret_key": SECRET, **attrs}
    return {
        "data": {
            "type": "webhook",
            "attributes": attributes,
            "relationships": {
                "webhook-topics": {"data": [{"type": "webhook-topic", "id": t} for t in topics]}
            },
        }
    }


def valid(operation_id: str, body: dict, status: str = "200") -> None:
    errors = sorted(_validator(operation_id, status).iter_errors(body), key=str)
    assert not errors, errors[0]


def metric_name(sim, event_id: str) -> str:
    """The name of an event's metric, read from the account."""
    metric_id = sim.account.event_metric_id(sim.account.event_index(event_id))
    return next(m.attributes["name"] for m in sim.account.metrics if m.id == metric_id)


# -- topics ---------------------------------------------------------------------------------------------------
def test_topics_are_one_per_metric_and_validate(sim):
    r = api(sim, "GET", "/api/webhook-topics")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/vnd.api+json"
    body = r.json()
    valid("get_webhook_topics", body)
    ids = [t["id"] for t in body["data"]]
    assert len(ids) == len(sim.account.metrics) == len(set(ids))
    # Klaviyo's own table: "Bounced Email" is event:klaviyo.bounced_email.
    assert {
        "event:klaviyo.bounced_email",
        "event:klaviyo.received_email",
        "event:klaviyo.received_sms",
    } <= set(ids)
    assert "event:shopify.placed_order" in ids

    one = api(sim, "GET", "/api/webhook-topics/event%3Aklaviyo.opened_email")
    assert one.status_code == 200
    valid("get_webhook_topic", one.json())
    assert one.json()["data"] == {
        "type": "webhook-topic",
        "id": "event:klaviyo.opened_email",
        "links": {"self": f"{sim.url}/api/webhook-topics/event:klaviyo.opened_email/"},
    }
    missing = api(sim, "GET", "/api/webhook-topics/event:klaviyo.nothing")
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "not_found"


# -- CRUD -----------------------------------------------------------------------------------------------------
def test_create_get_list_update_delete_validate_and_never_show_the_secret(sim):
    topics = ["event:klaviyo.opened_email", "event:klaviyo.clicked_email"]
    r = api(sim, "POST", "/api/webhooks", create_body(topics, "https://hooks.example.com/klaviyo/in?t=1"))
    assert r.status_code == 201, r.text
    created = r.json()
    valid("create_webhook", created, "201")
    assert SECRET not in r.text and "secret_key" not in r.text
    hook = created["data"]
    wid = hook["id"]
    assert len(wid) == 26 and hook["attributes"]["enabled"] is True
    assert hook["attributes"]["endpoint_url"] == "https://hooks.example.com"  # truncated for security
    assert hook["links"]["self"] == f"{sim.url}/api/webhooks/{wid}/"

    one = api(sim, "GET", f"/api/webhooks/{wid}?include=webhook-topics")
    assert one.status_code == 200
    valid("get_webhook", one.json())
    assert [t["id"] for t in one.json()["data"]["relationships"]["webhook-topics"]["data"]] == topics
    assert [t["id"] for t in one.json()["included"]] == topics
    assert (
        "data"
        not in api(sim, "GET", f"/api/webhooks/{wid}").json()["data"]["relationships"]["webhook-topics"]
    )

    api(sim, "POST", "/api/webhooks", create_body(topics[:1], "https://other.example.com/x"))
    listed = api(sim, "GET", "/api/webhooks?include=webhook-topics")
    valid("get_webhooks", listed.json())
    assert len(listed.json()["data"]) == 2 and SECRET not in listed.text
    assert sorted(t["id"] for t in listed.json()["included"]) == sorted(topics)
    sparse = api(sim, "GET", "/api/webhooks?fields[webhook]=name,enabled").json()
    assert set(sparse["data"][0]["attributes"]) == {"name", "enabled"}

    patch = {
        "data": {
            "type": "webhook",
            "id": wid,
            "attributes": {"name": "Renamed", "enabled": False, "secret_key": "another-secret-of-16+"},
            "relationships": {"webhook-topics": {"data": [{"type": "webhook-topic", "id": topics[1]}]}},
        }
    }
    updated = api(sim, "PATCH", f"/api/webhooks/{wid}", patch)
    assert updated.status_code == 200, updated.text
    valid("update_webhook", updated.json())
    attrs = updated.json()["data"]["attributes"]
    assert attrs["name"] == "Renamed" and attrs["enabled"] is False
    assert attrs["updated_at"] > hook["attributes"]["updated_at"] and "another-secret" not in updated.text
    stored = sim.webhooks.registered(sim.account)
    assert next(w for w in stored if w.id == wid).secret_key == "another-secret-of-16+"
    assert next(w for w in stored if w.id == wid).topics == [topics[1]]

    gone = api(sim, "DELETE", f"/api/webhooks/{wid}")
    assert gone.status_code == 204 and gone.content == b""
    assert api(sim, "GET", f"/api/webhooks/{wid}").status_code == 404
    assert api(sim, "DELETE", f"/api/webhooks/{wid}").status_code == 404


@pytest.mark.parametrize(
    "change,status,pointer",
    [
        (lambda b: b["data"]["attributes"].pop("secret_key"), 400, "/data/attributes/secret_key"),
        (lambda b: b["data"]["attributes"].update(secret_key="short"), 400, "/data/attributes/secret_key"),
        (lambda b: b["data"]["attributes"].pop("name"), 400, "/data/attributes/name"),
        (lambda b: b["data"]["attributes"].update(endpoint_url="http://example.com/x"), 400, None),
        (lambda b: b["data"]["attributes"].update(endpoint_url="not a url"), 400, None),
        (lambda b: b["data"]["attributes"].update(enabled=True), 400, "/data/attributes/enabled"),
        (lambda b: b["data"].pop("relationships"), 400, None),
        (lambda b: b["data"]["relationships"]["webhook-topics"].update(data=[]), 400, None),
        (
            lambda b: b["data"]["relationships"]["webhook-topics"]["data"][0].update(id="event:klaviyo.nope"),
            400,
            "/data/relationships/webhook-topics/data/0/id",
        ),
        (lambda b: b["data"].update(type="webhooks"), 409, "/data/type"),
    ],
)
def test_create_refuses_what_the_spec_refuses(sim, change, status, pointer):
    body = create_body(["event:klaviyo.opened_email"], "https://hooks.example.com/in")
    change(body)
    r = api(sim, "POST", "/api/webhooks", body)
    assert r.status_code == status, r.text
    error = r.json()["errors"][0]
    assert error["code"] == ("invalid" if status == 400 else "conflict")
    if pointer:
        assert error["source"]["pointer"] == pointer
    assert sim.webhooks.registered(sim.account) == []


def test_update_checks_the_id_and_refuses_wholly(sim):
    wid = api(
        sim, "POST", "/api/webhooks", create_body(["event:klaviyo.opened_email"], "https://a.example.com")
    )
    wid = wid.json()["data"]["id"]
    other = {"data": {"type": "webhook", "id": "01XXXXXXXXXXXXXXXXXXXXXXXX", "attributes": {"name": "x"}}}
    assert api(sim, "PATCH", f"/api/webhooks/{wid}", other).status_code == 409
    half_bad = {"data": {"type": "webhook", "id": wid, "attributes": {"name": "New", "secret_key": "short"}}}
    assert api(sim, "PATCH", f"/api/webhooks/{wid}", half_bad).status_code == 400
    assert sim.webhooks.registered(sim.account)[0].name == "Warehouse"  # nothing changed


def test_scopes_access_and_rate_tier(make_sim):
    sim = make_sim(key_scopes={KEY: {"webhooks:read"}})
    assert api(sim, "GET", "/api/webhooks").status_code == 200
    r = api(
        sim, "POST", "/api/webhooks", create_body(["event:klaviyo.opened_email"], "https://a.example.com")
    )
    assert r.status_code == 403 and "webhooks:write" in r.json()["errors"][0]["detail"]
    assert {operations()[op].scopes[0] for op in ("get_webhooks", "get_webhook_topics")} == {"webhooks:read"}
    webhook_ops = [op for op in operations().values() if "webhook" in op.operation_id]
    assert len(webhook_ops) == 7 and {(op.burst, op.steady) for op in webhook_ops} == {(1, 15)}  # XS tier

    closed = make_sim(Account(seed=7, webhook_access=False))
    for method, path in (
        ("GET", "/api/webhooks"),
        ("GET", "/api/webhook-topics"),
        ("DELETE", "/api/webhooks/x"),
    ):
        r = api(closed, method, path)
        assert r.status_code == 403 and r.json()["errors"][0]["code"] == "permission_denied", path
    # The admin hook opens the account (as an upgrade to a plan with webhooks would).
    assert requests.post(closed.url + "/_sim/webhooks/access?enabled=1", timeout=5).json() == {
        "webhook_access": True
    }
    assert api(closed, "GET", "/api/webhooks").status_code == 200

    limited = make_sim(rate_limits=True)
    time.sleep(1 - time.time() % 1 + 0.01)  # the top of a 1-second window: burst 1/s
    statuses = [api(limited, "GET", "/api/webhook-topics").status_code for _ in range(2)]
    assert statuses == [200, 429]


def test_the_official_sdk_reads_and_writes_webhooks(make_sim):
    from klaviyo_api import KlaviyoAPI

    sim = make_sim()
    sdk = KlaviyoAPI(KEY, max_delay=1, max_retries=0, test_host=sim.url)
    topics = sdk.Webhooks.get_webhook_topics()
    assert {t.id for t in topics.data} >= {"event:klaviyo.opened_email"}
    created = sdk.Webhooks.create_webhook(
        create_body(["event:klaviyo.opened_email"], "https://a.example.com/in")
    )
    assert created.data.attributes.enabled is True
    listed = sdk.Webhooks.get_webhooks(include=["webhook-topics"])
    assert [w.id for w in listed.data] == [created.data.id]
    patch = {"data": {"type": "webhook", "id": created.data.id, "attributes": {"enabled": False}}}
    assert sdk.Webhooks.update_webhook(created.data.id, patch).data.attributes.enabled is False
    sdk.Webhooks.delete_webhook(created.data.id)
    assert sdk.Webhooks.get_webhooks().data == []


# -- delivery -------------------------------------------------------------------------------------------------
def test_new_events_arrive_signed_with_the_get_event_payload(hooked):
    sim, rec, hook = hooked()
    before = time.time()
    ids = sim.account.import_events(6, days_ago=0.5)
    assert sim.webhooks.wait_idle(5)
    assert sim.webhooks.errors == []
    assert len(rec.received) == 1 and rec.received[0]["valid"]
    request = rec.received[0]
    assert request["path"] == "/hooks/klaviyo?x=1"
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json" and headers["Klaviyo-Webhook-Id"] == hook.id
    sent = email.utils.parsedate_to_datetime(headers["Klaviyo-Timestamp"])  # an HTTP date
    assert sent.tzinfo is not None and abs(sent.timestamp() - before) < 5
    doc = json.loads(request["body"])
    assert set(doc) == {"data", "meta"}
    assert {"klaviyo_account_id", "klaviyo_webhook_id", "timestamp"} <= set(doc["meta"])
    assert doc["meta"]["klaviyo_webhook_id"] == hook.id
    assert doc["meta"]["klaviyo_account_id"] == sim.account.account_id
    assert abs(dt.datetime.fromisoformat(doc["meta"]["timestamp"]).timestamp() - sent.timestamp()) < 1
    assert [item["external_id"] for item in doc["data"]] == ids
    for item in doc["data"]:
        # The payload is what GET /api/events/{id} answers, byte for byte in JSON terms.
        got = api(sim, "GET", f"/api/events/{item['external_id']}").json()
        assert item["payload"] == {"data": got["data"]}
        name = metric_name(sim, item["external_id"])
        assert item["topic"].split(".", 1)[1] == name.lower().replace(" ", "_")
    # Creation times are kept for latency: each before its delivery.
    created = sim.account.event_created_at
    assert set(ids) <= set(created) and all(before <= created[i] <= request["at"] for i in ids)
    attempt = sim.webhooks.attempts(hook.id)[0]
    assert (attempt.attempt, attempt.status, attempt.fault, attempt.event_ids) == (1, 200, None, tuple(ids))


def test_only_enabled_webhooks_and_their_topics_get_events(hooked):
    sim, rec, hook = hooked(topics=["event:klaviyo.opened_email"])
    ids = sim.account.import_events(120, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    delivered = [item for doc in rec.documents() for item in doc["data"]]
    opened = [i for i in ids if metric_name(sim, i) == "Opened Email"]
    assert opened and [item["external_id"] for item in delivered] == opened
    assert {item["topic"] for item in delivered} == {"event:klaviyo.opened_email"}

    patch = {"data": {"type": "webhook", "id": hook.id, "attributes": {"enabled": False}}}
    assert api(sim, "PATCH", f"/api/webhooks/{hook.id}", patch).status_code == 200
    count = len(rec.received)
    sim.account.import_events(60, days_ago=1)
    assert sim.webhooks.wait_idle(5) and len(rec.received) == count  # disabled: nothing
    patch["data"]["attributes"]["enabled"] = True
    api(sim, "PATCH", f"/api/webhooks/{hook.id}", patch)
    sim.account.import_events(60, days_ago=1)
    assert sim.webhooks.wait_idle(5) and len(rec.received) == count + 1  # enabled again: the new ones only
    assert api(sim, "DELETE", f"/api/webhooks/{hook.id}").status_code == 204
    sim.account.import_events(60, days_ago=1)
    assert sim.webhooks.wait_idle(5) and len(rec.received) == count + 1  # deleted: nothing


def test_batches_hold_at_most_max_batch_and_linger_gathers(hooked):
    sim, rec, hook = hooked(WebhookService(max_batch=3, linger=0.3, time_scale=0.001))
    ids = sim.account.import_events(7, days_ago=1)  # two full batches at once, one left to linger
    assert sim.webhooks.wait_idle(5)
    assert [[i["external_id"] for i in doc["data"]] for doc in rec.documents()] == [
        ids[:3],
        ids[3:6],
        ids[6:],
    ]

    first = sim.account.import_events(1, days_ago=1)
    time.sleep(0.05)
    second = sim.account.import_events(1, days_ago=1)  # within the linger: the same batch
    assert sim.webhooks.wait_idle(5)
    assert [i["external_id"] for i in rec.documents()[-1]["data"]] == first + second
    assert all(r["valid"] for r in rec.received)


def test_the_admin_import_hook_triggers_delivery_and_reads_back(hooked):
    sim, rec, hook = hooked()
    ids = requests.post(sim.url + "/_sim/import_events?n=2&days_ago=1", timeout=5).json()["ids"]
    assert requests.post(sim.url + "/_sim/webhooks/idle?timeout=5", timeout=10).json() == {"idle": True}
    attempts = requests.post(sim.url + "/_sim/webhooks/attempts", timeout=5).json()["attempts"]
    assert [a["event_ids"] for a in attempts] == [ids] and attempts[0]["status"] == 200
    assert json.loads(attempts[0]["body"]) == rec.documents()[0]
    created = requests.post(sim.url + f"/_sim/webhooks/created?ids={ids[0]}", timeout=5).json()["created_at"]
    assert created == {ids[0]: sim.account.event_created_at[ids[0]]}


# -- retries --------------------------------------------------------------------------------------------------
def test_failed_deliveries_are_retried_with_backoff_and_recorded(hooked):
    sim, rec, hook = hooked(statuses=[500, 503, 204, 200])  # 204 is not one of Klaviyo's 200, 201, 202
    ids = sim.account.import_events(3, days_ago=1)
    assert sim.webhooks.wait_for(lambda attempts: any(a.ok for a in attempts), 5)
    assert sim.webhooks.wait_idle(5)
    attempts = sim.webhooks.attempts(hook.id)
    assert [(a.attempt, a.status, a.ok) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 204, False),
        (4, 200, True),
    ]
    assert len({a.batch_id for a in attempts}) == 1 and all(a.event_ids == tuple(ids) for a in attempts)
    # Each retry is a fresh, correctly signed request of the same events; the waits grow (10, 20, 40 ms here).
    assert all(r["valid"] for r in rec.received)
    assert len({d["meta"]["timestamp"] for d in rec.documents()}) == 4
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps[0] >= 0.01 and gaps[2] >= 0.04
    assert RetryPolicy().delay(1) == 10 and RetryPolicy().delay(30) == 3600  # capped at one hour


def test_connection_errors_and_timeouts_are_failures_too(make_sim, receiver):
    retry = RetryPolicy(timeout=0.2, max_attempts=2)
    service = WebhookService(linger=0.01, time_scale=0.001, retry=retry, keep_bodies=False)
    sim = make_sim(webhooks=service)
    slow = receiver(delay=0.5)
    dead = receiver()
    dead_url = dead.url
    dead.httpd.shutdown()
    dead.httpd.server_close()
    service.create(sim.account, "slow", slow.url, SECRET)
    service.create(sim.account, "dead", dead_url, SECRET)
    sim.account.import_events(1, days_ago=1)
    assert service.wait_idle(5)
    by_name = {w.name: w.id for w in service.registered(sim.account)}
    for name, error in (("slow", "timed out"), ("dead", "Connection")):
        attempts = service.attempts(by_name[name])
        assert [(a.attempt, a.status) for a in attempts] == [(1, None), (2, None)], name
        assert error.lower() in attempts[0].error.lower()
        assert attempts[0].body == b"" and attempts[0].headers["Klaviyo-Webhook-Id"] == by_name[name]


def test_a_webhook_failing_too_long_is_disabled(hooked):
    retry = RetryPolicy(first_delay=0.02, max_delay=0.05, disable_after=0.3)
    sim, rec, hook = hooked(WebhookService(linger=0.01, time_scale=1.0, retry=retry), statuses=[500] * 1000)
    sim.account.import_events(1, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    assert hook.enabled is False and len(sim.webhooks.attempts(hook.id)) >= 5
    assert api(sim, "GET", f"/api/webhooks/{hook.id}").json()["data"]["attributes"]["enabled"] is False


# -- faults ---------------------------------------------------------------------------------------------------
def test_bad_signature_and_wrong_webhook_id_come_before_the_genuine_batch(hooked):
    sim, rec, hook = hooked()
    sim.webhooks.faults.queue({"bad_signature", "wrong_webhook_id"})
    ids = sim.account.import_events(2, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    forged, wrong_id, genuine = rec.received
    assert not forged["valid"] and not wrong_id["valid"] and genuine["valid"]
    assert forged["body"] == genuine["body"]  # the same request, signed with another secret
    # The wrong id is correctly signed: only the header-versus-meta check catches it.
    headers = wrong_id["headers"]
    assert headers["Klaviyo-Webhook-Id"] != hook.id
    assert verify(wrong_id["body"], {**headers, "Klaviyo-Webhook-Id": hook.id}, SECRET)
    attempts = sim.webhooks.attempts(hook.id)
    assert [(a.fault, a.status) for a in attempts] == [
        ("bad_signature", 401),
        ("wrong_webhook_id", 401),
        (None, 200),
    ]
    assert all(a.event_ids == tuple(ids) for a in attempts)


def test_duplicates_are_byte_for_byte(hooked):
    sim, rec, hook = hooked()
    sim.webhooks.faults.queue("duplicate")
    sim.account.import_events(2, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    first, second = rec.received
    assert first["body"] == second["body"] and first["headers"] == second["headers"] and second["valid"]
    assert [a.fault for a in sim.webhooks.attempts(hook.id)] == [None, "duplicate"]


def test_out_of_order_holds_a_batch_until_the_next_has_gone(hooked):
    sim, rec, hook = hooked(WebhookService(max_batch=2, linger=0.05, time_scale=0.001))
    sim.webhooks.faults.queue("out_of_order", None)
    ids = sim.account.import_events(4, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    assert [[i["external_id"] for i in d["data"]] for d in rec.documents()] == [ids[2:], ids[:2]]
    # Held with no successor, a batch goes out after `hold` anyway.
    sim.webhooks.faults.hold = 0.2
    sim.webhooks.faults.queue("out_of_order")
    late = sim.account.import_events(1, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    assert [i["external_id"] for i in rec.documents()[-1]["data"]] == late


def test_replays_resend_an_old_request_later(hooked):
    sim, rec, hook = hooked()
    sim.webhooks.faults.replay_delay = 0.3
    sim.webhooks.faults.queue("replay")
    sim.account.import_events(1, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    original, replayed = rec.received
    assert replayed["body"] == original["body"] and replayed["headers"] == original["headers"]
    assert replayed["at"] - original["at"] >= 0.3

    # A capture ten minutes old: validly signed, but its timestamps are stale.
    sim.webhooks.faults.replay_stale_by = 600
    sim.webhooks.faults.replay_delay = 0.01
    sim.webhooks.faults.queue("replay")
    sim.account.import_events(1, days_ago=1)
    assert sim.webhooks.wait_idle(5)
    original, stale = rec.received[2:]
    assert stale["valid"]
    age = email.utils.parsedate_to_datetime(original["headers"]["Klaviyo-Timestamp"]) - (
        email.utils.parsedate_to_datetime(stale["headers"]["Klaviyo-Timestamp"])
    )
    assert age == dt.timedelta(seconds=600)
    meta_age = dt.datetime.fromisoformat(
        json.loads(original["body"])["meta"]["timestamp"]
    ) - dt.datetime.fromisoformat(json.loads(stale["body"])["meta"]["timestamp"])
    assert meta_age == dt.timedelta(seconds=600)
    assert [a.fault for a in sim.webhooks.attempts(hook.id)] == [None, "replay", None, "replay"]
    # Any recorded request can be replayed by hand, verbatim.
    again = sim.webhooks.replay(sim.webhooks.attempts(hook.id)[0])
    assert again.status == 200 and rec.received[-1]["body"] == rec.received[0]["body"]


def test_faults_over_the_admin_hook_and_by_share(hooked):
    sim, rec, hook = hooked()
    r = requests.post(
        sim.url + "/_sim/webhooks/faults?queue=duplicate,none,bad_signature%2Bduplicate", timeout=5
    )
    assert r.status_code == 200
    for _ in range(3):
        sim.account.import_events(1, days_ago=1)
        sim.webhooks.flush()
        assert sim.webhooks.wait_idle(5)
    assert [a.fault for a in sim.webhooks.attempts(hook.id)] == [
        None,
        "duplicate",
        None,
        "bad_signature",
        None,
        "duplicate",
    ]
    bad = requests.post(sim.url + "/_sim/webhooks/faults?queue=nonsense", timeout=5)
    assert bad.status_code == 400

    faults = WebhookFaults(duplicate=1.0)
    assert faults.draw() == {"duplicate"} and WebhookFaults().draw() == frozenset()


# -- the signing helper ---------------------------------------------------------------------------------------
def test_signed_delivery_verifies_independently():
    body = {
        "data": [],
        "meta": {"klaviyo_webhook_id": "01HF7AYTK76RHR4F17G6DGTRGF", "klaviyo_account_id": "X"},
    }
    at = dt.datetime(2024, 1, 4, 18, 5, 25, tzinfo=dt.UTC)
    made = signed_delivery(body, SECRET, at)
    assert made.headers["Klaviyo-Timestamp"] == "Thu, 04 Jan 2024 18:05:25 GMT"
    assert made.headers["Klaviyo-Webhook-Id"] == "01HF7AYTK76RHR4F17G6DGTRGF"
    assert verify(made.body, made.headers, SECRET) and not verify(made.body, made.headers, SECRET + "x")
    expected = hmac.new(
        SECRET.encode(), made.body + b"Thu, 04 Jan 2024 18:05:25 GMT", hashlib.sha256
    ).hexdigest()
    assert made.headers["Klaviyo-Signature"] == expected
    raw = signed_delivery(made.body, SECRET, "any header value", webhook_id="other")
    assert raw.body == made.body and raw.headers["Klaviyo-Webhook-Id"] == "other"
    assert not verify(raw.body, raw.headers, SECRET)  # signed, but the id does not match meta
