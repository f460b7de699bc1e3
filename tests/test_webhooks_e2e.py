"""Klaviyo system webhooks end to end: the simulator's WebhookService (written from Klaviyo's docs on its own)
sends real signed POSTs to the real receiver (pipelines/webhooks.py, uvicorn on a free loopback port), with the
webhook registered through `klaviyo-pipeline webhooks register` or `WebhooksApi.register` against the simulator.
Events created in the simulator (`import_events`) must land in klaviyo_events once each, as polling
`/api/events` loads them; forged, re-pointed and stale requests are refused with 401 and write nothing; a
receiver that answers 503 (its warehouse unreachable) or is down for a while gets the batches again by the
simulator's retries, and nothing is lost.

Klaviyo sends only to https URLs and `webhooks register` refuses any other, so the receiver here terminates TLS
itself (uvicorn with a self-signed certificate for 127.0.0.1, made with `openssl`), standing in for the proxy of
a real deployment, and the simulator's deliverer trusts that certificate (SSL_CERT_FILE).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import dagster as dg
import psycopg
import pytest
import requests
import uvicorn
from sqlalchemy import text

from assets.sync import SyncRequest, sync_entity
from assets.webhook_events import drain_inbox, webhook_events
from klaviyo_sim import RetryPolicy, WebhookService
from pipelines.webhook_sensor import klaviyo_webhook_sensor
from pipelines.webhooks import RECEIVE_PATH, InboxLoader, create_app
from resources.klaviyo import KlaviyoClient
from resources.warehouse import Warehouse, inbox
from resources.webhooks import TIMESTAMP_TOLERANCE, WebhooksApi
from tests.conftest import ROOT, TEST_KEY, cli_env
from tests.test_webhooks import body_of, event, headers_for, serving

UTC = dt.UTC
SECRET = "e2e-webhook-secret-0123456789abcdef"
# klaviyo_events' columns that come from Klaviyo (the others say when this warehouse wrote the row).
FROM_KLAVIYO = (
    'id, account_id, datetime, "timestamp", uuid, metric_id, profile_id, value, attribution_ids, '
    "event_properties, attributes_extra"
)


# -- TLS on loopback ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the receiver's TLS certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


@pytest.fixture
def tls(certificate, monkeypatch) -> tuple[str, str]:
    """The certificate, trusted by this process's default TLS context (the simulator's deliverer uses it)."""
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    return certificate


class Served:
    """An ASGI app served by uvicorn over TLS in a thread, on `port` (0: a free one); stop() and serve again on
    the same port, as a receiver process that is restarted."""

    def __init__(self, certificate: tuple[str, str], port: int = 0):
        self.certificate = certificate
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}{RECEIVE_PATH}"

    def start(self, app) -> Served:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        cert, key = self.certificate
        config = uvicorn.Config(app, log_level="warning", lifespan="on", ssl_certfile=cert, ssl_keyfile=key)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        self._sock = sock
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(15)
            self._sock.close()
            self._server = None


@pytest.fixture
def served(tls):
    made: list[Served] = []

    def make(app, port: int = 0) -> Served:
        made.append(Served(tls, port).start(app))
        return made[-1]

    yield make
    for s in made:
        s.stop()


# -- the simulator's side -------------------------------------------------------------------------------------
def fast_service(**kwargs) -> WebhookService:
    """Klaviyo's deliverer on a quick clock: batches of up to 20 after 50 ms, retries after 0.2 s, 0.3 s, …"""
    kwargs.setdefault("max_batch", 20)
    kwargs.setdefault("linger", 0.05)
    kwargs.setdefault("retry", RetryPolicy(first_delay=0.2, factor=1.5, max_delay=1.0))
    kwargs.setdefault("time_scale", 1.0)
    return WebhookService(**kwargs)


def cli_register(sim, monkeypatch, tmp_path, capsys, url: str, topics: list[str]) -> str:
    """`klaviyo-pipeline webhooks register --url URL --topics …` against the simulator; the webhook's id."""
    from pipelines.cli import main

    for name, value in {
        "KLAVIYO_API_KEY": TEST_KEY,
        "KLAVIYO_BASE_URL": sim.url,
        "KLAVIYO_RATE_TIME_SCALE": "0.01",
        "KLAVIYO_WEBHOOK_SECRET": SECRET,
        "KLAVIYO_PIPELINE_HOME": str(tmp_path / "state"),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(["webhooks", "register", "--url", url, "--topics", *topics])
    out = capsys.readouterr()
    assert exited.value.code == 0, out.err
    line = out.out.splitlines()[-1]
    assert line.startswith("created webhook "), line
    return line.split()[2]


def topics_of(client: KlaviyoClient) -> list[str]:
    topics = WebhooksApi(client).list_topics()
    assert topics and all(t.startswith("event:") for t in topics)
    return topics


def api_register(client: KlaviyoClient, url: str) -> str:
    """`WebhooksApi.register` (what the CLI calls) with every topic of the account; the webhook's id."""
    hook, created = WebhooksApi(client).register("klaviyo-pipeline", url, SECRET, topics_of(client))
    assert created
    return hook.id


# -- the warehouse's side -------------------------------------------------------------------------------------
def rows_of(warehouse: Warehouse, ids: list[str]) -> list[dict]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(
            text(f"SELECT {FROM_KLAVIYO} FROM klaviyo_events WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids}
        ).mappings()
        return [dict(r) for r in rows]


def copies_per_event(warehouse: Warehouse, ids: list[str]) -> Counter:
    with warehouse.engine.connect() as conn:
        return Counter(
            dict(
                conn.execute(
                    text("SELECT id, count(*) FROM klaviyo_events WHERE id = ANY(:ids) GROUP BY id"),
                    {"ids": ids},
                ).all()
            )
        )


def table_count(warehouse: Warehouse, table: str) -> int:
    with warehouse.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def inbox_of(warehouse: Warehouse) -> dict[str, dict]:
    with warehouse.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM klaviyo_webhook_inbox")).mappings().all()
    return {r["event_id"]: dict(r) for r in rows}


def wait_until(predicate, timeout: float, every: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def polled(client: KlaviyoClient, warehouse: Warehouse, around: dt.datetime):
    """A polling sync of events over the hours around `around` (as klaviyo/events reads /api/events)."""
    start = around.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    return sync_entity(
        SyncRequest("events", start, start + dt.timedelta(hours=3), full_refresh=True), client, warehouse
    )


# -- interop --------------------------------------------------------------------------------------------------
def test_pushed_events_land_once_each_as_polling_loads_them(
    make_sim, make_warehouse, served, client_for, monkeypatch, tmp_path, capsys
):
    sim = make_sim(webhooks=fast_service())
    warehouse, by_polling = make_warehouse(), make_warehouse()
    receiver = served(create_app(warehouse, SECRET))
    client = client_for(sim, rate_time_scale=0.01)
    hook_id = cli_register(sim, monkeypatch, tmp_path, capsys, receiver.url, topics_of(client))

    around = dt.datetime.now(UTC) - dt.timedelta(days=0.5)  # when the events are dated
    ids = sim.account.import_events(45, days_ago=0.5)  # batches of 20, 20 and what lingers
    ids += requests.post(f"{sim.url}/_sim/import_events?n=5&days_ago=0.5", timeout=10).json()["ids"]
    assert sim.webhooks.wait_idle(15) and sim.webhooks.errors == []
    attempts = sim.webhooks.attempts(hook_id)
    # Every request was a genuine first attempt, over https, answered 200 (the signature verified).
    assert attempts and {(a.status, a.attempt, a.fault) for a in attempts} == {(200, 1, None)}
    assert {a.url for a in attempts} == {receiver.url}
    assert sorted(i for a in attempts for i in a.event_ids) == sorted(ids)
    assert table_count(warehouse, "klaviyo_webhook_deliveries") == len(attempts)

    outcome = drain_inbox(warehouse)
    assert (outcome.loaded, outcome.counts.inserted, outcome.rejected) == (len(ids), len(ids), {})
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))

    # Polling the simulator's /api/events gives the same rows for these events.
    outcome = polled(client, by_polling, around)
    assert outcome.records_read >= len(ids)
    pushed = rows_of(warehouse, ids)
    assert pushed == rows_of(by_polling, ids) and len(pushed) == len(ids)

    # Polling into the warehouse the webhook filled: still one row per event, none of them changed.
    before = table_count(warehouse, "klaviyo_events")
    again = polled(client, warehouse, around)
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))
    assert rows_of(warehouse, ids) == pushed
    assert table_count(warehouse, "klaviyo_events") == before + again.records_read - len(ids)


def test_forged_stale_duplicated_and_reordered_deliveries(make_sim, warehouse, served, client_for):
    sim = make_sim(webhooks=fast_service(max_batch=5))
    receiver = served(create_app(warehouse, SECRET))
    hook_id = api_register(client_for(sim, rate_time_scale=0.01), receiver.url)
    faults = sim.webhooks.faults
    faults.replay_delay = 0.2
    created: list[list[str]] = []

    def burst(n: int, *fault_sets) -> None:
        faults.queue(*fault_sets)
        created.append(sim.account.import_events(n, days_ago=0.25))
        sim.webhooks.flush()
        assert sim.webhooks.wait_idle(15)

    burst(5, "bad_signature")
    burst(5, "wrong_webhook_id")
    burst(5, "duplicate")
    burst(10, "out_of_order", None)  # two batches at once: the first held back until the second has gone
    burst(5, "replay")  # resent 0.2 s later as captured: within the tolerance, a repeat
    burst(5, {"bad_signature", "wrong_webhook_id", "duplicate"})
    faults.replay_stale_by = TIMESTAMP_TOLERANCE.total_seconds() + 300
    burst(5, "replay")  # a capture older than the tolerance, correctly signed
    ids = [i for ids in created for i in ids]
    assert sim.webhooks.errors == []

    attempts = sim.webhooks.attempts(hook_id)
    statuses = Counter((a.fault, a.status) for a in attempts)
    assert statuses == {
        (None, 200): 8,  # every genuine batch, once
        ("bad_signature", 401): 2,
        ("wrong_webhook_id", 401): 2,
        ("duplicate", 200): 2,
        ("replay", 200): 1,
        ("replay", 401): 1,
    }, statuses
    # The held batch went out after the one cut after it.
    order = [a.event_ids for a in attempts if a.fault is None]
    held, successor = tuple(created[3][:5]), tuple(created[3][5:])
    assert order.index(successor) < order.index(held)

    # Refused requests wrote nothing: one delivery row per request answered 200, and each event's count of
    # deliveries is the number of accepted requests that carried it.
    accepted = [a for a in attempts if a.status == 200]
    assert table_count(warehouse, "klaviyo_webhook_deliveries") == len(accepted)
    carried = Counter(i for a in accepted for i in a.event_ids)
    inbox = inbox_of(warehouse)
    assert {i: r["deliveries"] for i, r in inbox.items()} == dict(carried)
    assert sorted(inbox) == sorted(ids)

    outcome = drain_inbox(warehouse)
    assert (outcome.loaded, outcome.counts.inserted) == (len(ids), len(ids))
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))
    assert table_count(warehouse, "klaviyo_events") == len(ids)


@contextlib.contextmanager
def unreachable(admin_url: str, warehouse: Warehouse):
    """The warehouse's database refuses connections (and drops the open ones) until the block ends."""
    name = warehouse.engine.url.database
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
    try:
        yield
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_a_receiver_whose_warehouse_is_down_answers_503_and_gets_the_batches_again(
    make_sim, warehouse, served, client_for, admin_url
):
    sim = make_sim(webhooks=fast_service())
    loader = InboxLoader(warehouse, retry_seconds=0.2)
    receiver = served(create_app(warehouse, SECRET, loader=loader))
    hook_id = api_register(client_for(sim, rate_time_scale=0.01), receiver.url)

    first = sim.account.import_events(10, days_ago=0.25)
    assert wait_until(lambda: len(copies_per_event(warehouse, first)) == 10, 10)
    with unreachable(admin_url, warehouse):
        down = sim.account.import_events(20, days_ago=0.25) + sim.account.import_events(20, days_ago=0.25)

        def refused_twice(attempts) -> bool:
            failed = Counter(a.batch_id for a in attempts if a.status == 503)
            return len(failed) == 2 and min(failed.values()) >= 2

        assert sim.webhooks.wait_for(refused_twice, 15)
    # The warehouse is back: the retries land, the loader loads them, nothing is lost or doubled.
    assert sim.webhooks.wait_idle(15) and sim.webhooks.errors == []
    ids = first + down
    assert wait_until(lambda: len(copies_per_event(warehouse, ids)) == len(ids), 10)
    attempts = sim.webhooks.attempts(hook_id)
    assert {a.status for a in attempts} == {200, 503}
    by_batch: dict[str, list] = {}
    for a in attempts:
        by_batch.setdefault(a.batch_id, []).append(a.status)
    assert sorted(by_batch.values(), key=len)[0] == [200]  # the batch sent before the outage
    assert all(s[-1] == 200 and s.count(200) == 1 for s in by_batch.values())
    # Only the accepted requests wrote a delivery row.
    assert table_count(warehouse, "klaviyo_webhook_deliveries") == len(by_batch)
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))
    assert table_count(warehouse, "klaviyo_events") == len(ids)
    assert all(r["loaded_at"] is not None for r in inbox_of(warehouse).values())
    # Nothing is left for the sensor.
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"warehouse": warehouse}
    )
    assert isinstance(klaviyo_webhook_sensor(context), dg.SkipReason)


def test_a_receiver_that_is_down_then_restarted_loses_nothing(make_sim, warehouse, served, client_for):
    sim = make_sim(webhooks=fast_service())
    # The first process stores deliveries but does not load them (--no-load), then dies.
    receiver = served(create_app(warehouse, SECRET))
    hook_id = api_register(client_for(sim, rate_time_scale=0.01), receiver.url)
    stored = sim.account.import_events(15, days_ago=0.25)
    assert sim.webhooks.wait_idle(10)
    receiver.stop()
    assert table_count(warehouse, "klaviyo_events") == 0 and len(inbox_of(warehouse)) == 15
    # While it is down, Klaviyo's requests fail to connect and are tried again.
    refused = sim.account.import_events(25, days_ago=0.25)
    assert sim.webhooks.wait_for(lambda a: sum(x.status is None for x in a) >= 3, 10)
    # A new process on the same port, loading: it loads what the first left pending, then the retries.
    loader = InboxLoader(warehouse, retry_seconds=0.2)
    served(create_app(warehouse, SECRET, loader=loader), port=receiver.port)
    ids = stored + refused
    assert wait_until(lambda: len(copies_per_event(warehouse, ids)) == len(ids), 15)
    assert sim.webhooks.wait_idle(15) and sim.webhooks.errors == []
    errors = [a.error for a in sim.webhooks.attempts(hook_id) if a.status is None]
    assert errors and all("refused" in e.lower() for e in errors)
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))
    assert loader.loaded == len(ids) and loader.failures == 0


# -- loading in the receiver's process (webhooks serve --load) -----------------------------------------------
def test_the_receiver_loads_within_seconds_beside_the_asset_without_double_loading(
    make_sim, warehouse, served, client_for
):
    sim = make_sim(webhooks=fast_service(max_batch=50))
    loader = InboxLoader(warehouse)
    receiver = served(create_app(warehouse, SECRET, loader=loader))
    api_register(client_for(sim, rate_time_scale=0.01), receiver.url)
    seen: dict[str, float] = {}
    ids: list[str] = []

    def bursts(n: int) -> None:
        """`n` bursts of 50 events, each watched until its rows are in klaviyo_events (when first seen)."""
        for _ in range(n):
            ids.extend(sim.account.import_events(50, days_ago=0.25))
            deadline = time.monotonic() + 10
            while len(seen) < len(ids) and time.monotonic() < deadline:
                now = time.time()
                for eid in copies_per_event(warehouse, ids):
                    seen.setdefault(eid, now)
                time.sleep(0.02)
            time.sleep(0.2)

    # The receiver alone: it loads every event, seconds at most after the simulator created it.
    bursts(4)
    assert sorted(seen) == sorted(ids) and loader.loaded == len(ids) == 200
    created = sim.account.event_created_at
    latencies = sorted(seen[i] - created[i] for i in ids)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    assert p95 < 5.0, f"p95 from creation to klaviyo_events {p95:.2f} s"

    # The asset's drain running meanwhile, over and over in two threads: each event is loaded by one of them.
    stop = threading.Event()
    by_asset: list[int] = []

    def asset_drains() -> None:
        while not stop.is_set():
            by_asset.append(drain_inbox(warehouse, batch_rows=30).loaded)
            time.sleep(0.005)

    racers = [threading.Thread(target=asset_drains) for _ in range(2)]
    for t in racers:
        t.start()
    try:
        bursts(6)
    finally:
        stop.set()
        for t in racers:
            t.join(30)
    assert sorted(seen) == sorted(ids) and len(ids) == 500
    assert copies_per_event(warehouse, ids) == Counter(dict.fromkeys(ids, 1))
    # Which of them takes a batch is a race (either may take all); that no event is taken twice is not.
    assert loader.loaded + sum(by_asset) == len(ids)
    assert table_count(warehouse, "klaviyo_events") == len(ids)
    # The sensor and the asset then find nothing pending.
    context = dg.build_sensor_context(
        instance=dg.DagsterInstance.ephemeral(), resources={"warehouse": warehouse}
    )
    assert isinstance(klaviyo_webhook_sensor(context), dg.SkipReason)
    result = dg.materialize([webhook_events], resources={"warehouse": warehouse})
    meta = result.asset_materializations_for_node("klaviyo__webhook_events")[0].metadata
    assert meta["events_loaded"].value == 0 and meta["events_pending"].value == 0


def test_a_failed_load_is_tried_again_and_the_events_wait_pending(warehouse):
    failures = []

    def flaky(warehouse, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise RuntimeError("warehouse went away")
        return drain_inbox(warehouse, **kwargs)

    loader = InboxLoader(warehouse, retry_seconds=0.3, drain=flaky)
    with serving(create_app(warehouse, SECRET, loader=loader)) as url:
        body = body_of([event(i) for i in range(4)])
        assert requests.post(
            url + RECEIVE_PATH, data=body, headers=headers_for(body, secret=SECRET), timeout=10
        ).ok
        with warehouse.engine.connect() as conn:
            assert inbox.pending_summary(conn).count == 4  # refused twice: pending, not lost
        assert wait_until(lambda: loader.loaded == 4, 5)
    loader.stop()
    assert len(failures) == 2 and loader.failures == 2 and loader.last_error is None
    assert table_count(warehouse, "klaviyo_events") == 4


def test_webhooks_serve_loads_by_default_in_its_own_process(make_sim, new_database, client_for, tmp_path):
    """`klaviyo-pipeline webhooks serve` as a user runs it (plain http behind the proxy; the simulator allows a
    loopback http endpoint, registered here without the CLI's https check): events land with no drain run."""
    from pipelines.cli import build_parser

    parsed = build_parser().parse_args(["webhooks", "serve", "--port", "1"])
    assert parsed.load is True
    assert build_parser().parse_args(["webhooks", "serve", "--port", "1", "--no-load"]).load is False

    sim = make_sim(webhooks=fast_service())
    url = new_database().replace("postgresql://", "postgresql+psycopg://", 1)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = cli_env(
        tmp_path,
        WAREHOUSE_URL=url,
        DAGSTER_PG_URL=url.replace("+psycopg", "+psycopg2"),
        KLAVIYO_API_KEY=TEST_KEY,
        KLAVIYO_BASE_URL=sim.url,
        KLAVIYO_WEBHOOK_SECRET=SECRET,
    )
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines", "webhooks", "serve", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    warehouse = Warehouse(url=url)
    try:
        health = f"http://127.0.0.1:{port}/healthz"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            with contextlib.suppress(requests.ConnectionError):
                return requests.get(health, timeout=5).ok
            return False

        assert wait_until(up, 60, every=0.2)
        client = client_for(sim, rate_time_scale=0.01)
        WebhooksApi(client).create(
            "klaviyo-pipeline", f"http://127.0.0.1:{port}{RECEIVE_PATH}", SECRET, topics_of(client)
        )
        ids = sim.account.import_events(30, days_ago=0.25)
        assert wait_until(lambda: len(copies_per_event(warehouse, ids)) == len(ids), 10, every=0.05)
    finally:
        proc.terminate()
        code = proc.wait(30)
        log.close()
        warehouse.dispose()
    output = (tmp_path / "serve.log").read_text()
    # uvicorn shuts down cleanly on SIGTERM (the loader stopped with the app), then re-raises the signal.
    assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert "loading them into klaviyo_events in this process" in output
    assert "inbox events into klaviyo_events" in output  # the loader's line
    assert SECRET not in output
