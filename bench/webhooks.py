"""Klaviyo system webhooks, with the receiver run as a user runs it (`klaviyo-pipeline webhooks serve`, in its
own process, on a fresh database):

(a) latency from an event's creation in the simulator (its own process; `event_created_at`) to its row in
    klaviyo_events (this process polls the table), p50 and p95 over events created in bursts, with the receiver
    loading in its process (`--load`, the default); the baseline, measured in the same run, is the delivery
    alone: creation to the receiver's 200, i.e. the event committed to the inbox;
(b) the receiver's throughput (deliveries/s and events/s) for signed batches of 100 events posted by concurrent
    senders, `--load` and `--no-load`, against a bare Starlette endpoint on uvicorn (its own process, the same
    access log) that reads the body and answers 200, measured in the same run.

BENCH_ADMIN_URL (default the local postgres) is where the fresh database `bench_webhooks` is made; BENCH_EVENTS,
BENCH_BURSTS, BENCH_DELIVERIES, BENCH_SENDERS change the sizes.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests
from _common import BENCH_KEY, ROOT, simulator_process, unlimited_budget

ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "bench_webhooks"
SECRET = "bench-webhook-secret-0123456789abcdef"
EVENTS = int(os.environ.get("BENCH_EVENTS", "500"))
BURSTS = int(os.environ.get("BENCH_BURSTS", "10"))
DELIVERIES = int(os.environ.get("BENCH_DELIVERIES", "200"))  # per round; three rounds of each
PER_DELIVERY = 100
SENDERS = int(os.environ.get("BENCH_SENDERS", "8"))
ROUNDS = 3
BARE_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def receive(request):
    await request.body()
    return Response(b'{}', media_type="application/json")

app = Starlette(routes=[Route("/klaviyo/webhooks", receive, methods=["POST"]),
                        Route("/healthz", lambda r: Response(b"ok"), methods=["GET"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), server_header=False, log_level="info")
"""


# -- processes ------------------------------------------------------------------------------------------------
def fresh_database() -> str:
    """A new, empty database on the admin server; its SQLAlchemy URL."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    base = ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{DATABASE}"


def drop_database() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def process(argv: list[str], port: int, env: dict[str, str], log: Path) -> Iterator[str]:
    """A server process (its output in `log`), once its /healthz answers; yields its receive URL."""
    with log.open("w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{' '.join(argv[:5])} did not start:\n{log.read_text()[-3000:]}")
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok:
                        break
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}/klaviyo/webhooks"
        finally:
            proc.terminate()
            proc.wait(30)


def receiver(url: str, sim_url: str, home: Path, load: bool, name: str):
    """`klaviyo-pipeline webhooks serve` on a free port."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))}
    env.update(
        WAREHOUSE_URL=url,
        DAGSTER_PG_URL=url.replace("+psycopg", "+psycopg2"),
        KLAVIYO_API_KEY=BENCH_KEY,
        KLAVIYO_BASE_URL=sim_url,
        KLAVIYO_WEBHOOK_SECRET=SECRET,
        KLAVIYO_PIPELINE_HOME=str(home / "state"),
        DAGSTER_HOME=str(home / "dagster_home"),
    )
    argv = [sys.executable, "-m", "pipelines", "webhooks", "serve", "--port", str(port)]
    return process(argv + ([] if load else ["--no-load"]), port, env, home / f"{name}.log")


def bare_endpoint(home: Path):
    port = free_port()
    return process([sys.executable, "-c", BARE_APP, str(port)], port, dict(os.environ), home / "bare.log")


# -- (a) latency ----------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Latency:
    """Seconds from each event's creation in the simulator to the receiver's 200 and to its row in klaviyo_events."""

    delivered: list[float]
    loaded: list[float]
    deliveries: int


def latency(sim_url: str, receive_url: str, warehouse) -> Latency:
    """Register a webhook for every topic at the receiver, create EVENTS events in BURSTS bursts, and time them."""
    from sqlalchemy import text

    from resources.klaviyo import KlaviyoClient
    from resources.webhooks import WebhooksApi

    client = KlaviyoClient(BENCH_KEY, base_url=sim_url, budget=unlimited_budget())
    api = WebhooksApi(client)
    hook = api.create("bench", receive_url, SECRET, api.list_topics())  # every event of the account
    client.close()
    ids: list[str] = []
    seen: dict[str, float] = {}
    done = threading.Event()

    def poll() -> None:
        with warehouse.engine.connect() as conn:
            while not done.is_set():
                waiting = [i for i in ids if i not in seen]
                if waiting:
                    found = conn.execute(
                        text("SELECT id FROM klaviyo_events WHERE id = ANY(:ids)"), {"ids": waiting}
                    ).scalars()
                    now = time.time()
                    for eid in found:
                        seen[eid] = now
                    conn.rollback()  # a fresh snapshot each time
                time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    per_burst = EVENTS // BURSTS
    for _ in range(BURSTS):
        answer = requests.post(f"{sim_url}/_sim/import_events?n={per_burst}&days_ago=0.1", timeout=30)
        ids.extend(answer.json()["ids"])
        time.sleep(0.5)
    deadline = time.monotonic() + 60
    while len(seen) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    poller.join()
    if len(seen) < len(ids):
        raise SystemExit(f"{len(ids) - len(seen)} of {len(ids)} events never reached klaviyo_events")
    created = requests.post(f"{sim_url}/_sim/webhooks/created", timeout=30).json()["created_at"]
    attempts = requests.post(f"{sim_url}/_sim/webhooks/attempts?webhook_id={hook.id}", timeout=60).json()
    answered: dict[str, float] = {}
    for a in attempts["attempts"]:
        if a["ok"]:
            for eid in a["event_ids"]:
                answered.setdefault(eid, a["at"] + a["elapsed"])
    return Latency(
        delivered=[answered[i] - created[i] for i in ids],
        loaded=[seen[i] - created[i] for i in ids],
        deliveries=sum(a["ok"] for a in attempts["attempts"]),
    )


# -- (b) throughput -------------------------------------------------------------------------------------------
def deliveries(rounds: int, count: int) -> list[list[tuple[bytes, dict[str, str]]]]:
    """`rounds` × `count` signed deliveries of PER_DELIVERY distinct events each, shaped as the simulator sends
    them (each payload what GET /api/events/{id} answers); no event is in two deliveries."""
    from klaviyo_sim import Account, signed_delivery
    from klaviyo_sim.render import Renderer
    from klaviyo_sim.webhooks import account_topics

    account = Account(seed=7)
    renderer = Renderer(account, "http://127.0.0.1", {})
    topics = account_topics(account)
    rendered = [renderer.one("event", account.event_id(i)) for i in range(account.total_events)]
    out: list[list[tuple[bytes, dict[str, str]]]] = []
    k = 0
    for _ in range(rounds):
        batch = []
        for _ in range(count):
            items = []
            for _ in range(PER_DELIVERY):
                source = rendered[k % len(rendered)]
                event = {**source, "id": f"{source['id']}x{k // len(rendered)}"}
                topic = topics[source["relationships"]["metric"]["data"]["id"]]
                items.append({"external_id": event["id"], "payload": {"data": event}, "topic": topic})
                k += 1
            meta = {
                "klaviyo_account_id": account.account_id,
                "klaviyo_webhook_id": "01BENCH",
                "timestamp": "",
            }
            signed = signed_delivery({"data": items, "meta": meta}, SECRET)
            batch.append((signed.body, signed.headers))
        out.append(batch)
    return out


def post_all(url: str, batch: list[tuple[bytes, dict[str, str]]]) -> float:
    """POST every delivery, SENDERS at a time over kept-alive connections; the wall time. Each must get 200."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    queue = iter(range(len(batch)))
    lock = threading.Lock()
    failures: list[str] = []

    def sender() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        while True:
            with lock:
                i = next(queue, None)
            if i is None:
                break
            body, headers = batch[i]
            conn.request("POST", path, body, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{response.status}")
        conn.close()

    threads = [threading.Thread(target=sender) for _ in range(SENDERS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    if failures:
        raise SystemExit(f"{len(failures)} deliveries were not answered 200: {sorted(set(failures))}")
    return wall


def resign(batch: list[tuple[bytes, dict[str, str]]]) -> list[tuple[bytes, dict[str, str]]]:
    """The same bodies signed now (the receiver refuses a Klaviyo-Timestamp older than five minutes)."""
    from klaviyo_sim import signed_delivery

    return [
        (body, signed_delivery(body, SECRET, webhook_id=h["Klaviyo-Webhook-Id"]).headers) for body, h in batch
    ]


def loaded_count(warehouse) -> int:
    from sqlalchemy import text

    with warehouse.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM klaviyo_events")).scalar_one()


# -- the run --------------------------------------------------------------------------------------------------
def main() -> None:
    from resources.warehouse import Warehouse

    home = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    url = fresh_database()
    warehouse = Warehouse(url=url)
    print("preparing signed deliveries …", flush=True)
    prepared = deliveries(2 * ROUNDS, DELIVERIES)
    load_rounds, no_load_rounds = prepared[:ROUNDS], prepared[ROUNDS:]  # no event in both
    body_kb = statistics.mean(len(b) for b, _ in load_rounds[0]) / 1024
    try:
        with simulator_process("--no-rate-limits") as (sim_url, _sim):
            with receiver(url, sim_url, home, load=True, name="receiver-load") as receive_url:
                figures = latency(sim_url, receive_url, warehouse)
                before = loaded_count(warehouse)
                load_walls, loaded_walls = [], []
                for batch in load_rounds:
                    batch = resign(batch)
                    began = time.perf_counter()
                    load_walls.append(post_all(receive_url, batch))
                    target = before + len(batch) * PER_DELIVERY
                    deadline = time.monotonic() + 300
                    while loaded_count(warehouse) < target:
                        if time.monotonic() > deadline:
                            raise SystemExit("the receiver did not load every delivered event")
                        time.sleep(0.01)
                    loaded_walls.append(time.perf_counter() - began)
                    before = target
            with receiver(url, sim_url, home, load=False, name="receiver-no-load") as receive_url:
                no_load_walls = [post_all(receive_url, resign(b)) for b in no_load_rounds]
            with bare_endpoint(home) as bare_url:
                # Each of its rounds posts every prepared delivery: one round of 200 is over too soon to time.
                everything = [d for batch in prepared for d in batch]
                bare_walls = [post_all(bare_url, resign(everything)) for _ in range(ROUNDS)]
    finally:
        warehouse.dispose()
        drop_database()

    print(
        f"\n(a) latency from creation in the simulator to the row in klaviyo_events: {len(figures.loaded)} "
        f"events in {BURSTS} bursts of {EVENTS // BURSTS}, 0.5 s apart, {figures.deliveries} deliveries "
        "(`webhooks serve`, loading in its process)"
    )
    for label, values in (
        ("creation -> receiver's 200, in the inbox (baseline)", figures.delivered),
        ("creation -> row in klaviyo_events", figures.loaded),
    ):
        print(
            f"  {label:<52} p50 {percentile(values, 0.5) * 1000:6.0f} ms   p95 "
            f"{percentile(values, 0.95) * 1000:6.0f} ms   max {max(values) * 1000:6.0f} ms"
        )
    p95 = percentile(figures.loaded, 0.95)
    print(f"  p95 {p95:.2f} s: {'meets' if p95 <= 5 else 'MISSES'} the target p95 <= 5 s")

    print(
        f"\n(b) throughput: {DELIVERIES} signed deliveries of {PER_DELIVERY} events ({body_kb:.0f} KB each) per "
        f"round ({len(everything)} for the bare endpoint), {SENDERS} concurrent senders, median of {ROUNDS} rounds"
    )

    def line(label: str, walls: list[float], count: int = DELIVERIES) -> float:
        wall = statistics.median(walls)
        rate = count / wall
        print(f"  {label:<44} {rate:7.0f} deliveries/s  {rate * PER_DELIVERY:9,.0f} events/s  ({wall:.2f} s)")
        return rate

    bare = line("bare Starlette endpoint (answers 200)", bare_walls, len(everything))
    stored = line("receiver --no-load (verified, in the inbox)", no_load_walls)
    loading = line("receiver --load (answered)", load_walls)
    line("receiver --load (answered and loaded)", loaded_walls)
    print(f"  ratio receiver/bare: --no-load {stored / bare:.2f}x, --load {loading / bare:.2f}x")
    print(f"\nthe processes' logs: {home}")


if __name__ == "__main__":
    main()
