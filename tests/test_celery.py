"""Runs spread over Celery workers: two `klaviyo-pipeline worker` processes take the steps of a 30-day backfill of
three accounts (a run each) started with KLAVIYO_EXECUTOR=celery (broker: RabbitMQ on 127.0.0.1:5672), against
the shared Dagster instance and warehouse in Postgres; every account's tables end up equal to its simulated
account, and no row carries another account's id. The runs sync campaigns, flows (their steps and messages),
lists and events: a step each is what spreads over the workers, and the whole catalogue would only add steps
(the full sync of every entity is checked in process, by test_pipeline)."""

import datetime as dt
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from klaviyo_sim import Account
from pipelines.environment import start_group, stop_group
from resources.accounts import Account as Declared
from resources.accounts import add_account
from tests.conftest import cli_env, migrate_warehouse

ROOT = Path(__file__).resolve().parents[1]
ENTITIES = [arg for e in ("campaigns", "flows", "lists", "events") for arg in ("--entity", e)]


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.mark.long
@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_two_celery_workers_backfill_three_accounts_for_30_days_each_equal_to_its_simulated_account(
    tmp_path, make_sim, new_database
):
    keys = {name: f"pk_{name}_" + "c" * 30 for name in ("acme", "globex", "initech")}
    accounts = {
        "acme": Account(seed=31),
        "globex": Account(seed=32, timezone="America/New_York"),
        "initech": Account(seed=33, timezone="Asia/Kolkata"),
    }
    sim = make_sim(Account(seed=7), accounts={keys[n]: a for n, a in accounts.items()})
    declared = tmp_path / "accounts.yaml"
    for name in accounts:
        add_account(declared, Declared(name, f"KLAVIYO_KEY_{name.upper()}"))
    warehouse_url, dagster_url = new_database(), new_database()  # empty; dropped after the test
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "instance" / "dagster.yaml").read_text())
    start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=29)).isoformat()
    env = cli_env(
        tmp_path,
        WAREHOUSE_URL=warehouse_url.replace("postgresql://", "postgresql+psycopg://"),
        DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://"),
        DAGSTER_HOME=str(home),
        KLAVIYO_ACCOUNTS_FILE=str(declared),
        **{f"KLAVIYO_KEY_{n.upper()}": keys[n] for n in accounts},
        KLAVIYO_BASE_URL=sim.url,
        KLAVIYO_RATE_TIME_SCALE="0.01",
        KLAVIYO_EXECUTOR="celery",
        KLAVIYO_CELERY_QUEUE=f"kp-test-{uuid.uuid4().hex[:8]}",  # this test's own queue on the shared broker
    )
    env["KLAVIYO_START_DATE"] = start
    migrate_warehouse(env["WAREHOUSE_URL"])
    logs = {f"{name}-{uuid.uuid4().hex[:6]}": tmp_path / f"{name}.log" for name in ("w1", "w2")}
    workers = [
        start_group(
            [sys.executable, "-m", "pipelines", "worker", "--name", name, "--concurrency", "1"], env, log
        )
        for name, log in logs.items()
    ]
    try:
        deadline = time.monotonic() + 90
        while not all(" ready." in log.read_text() for log in logs.values()):
            assert time.monotonic() < deadline, {n: log.read_text()[-2000:] for n, log in logs.items()}
            assert all(w.poll() is None for w in workers), {
                n: log.read_text()[-2000:] for n, log in logs.items()
            }
            time.sleep(0.5)
        synced = subprocess.run(
            [sys.executable, "-m", "pipelines", "sync", "--start", start, *ENTITIES],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    finally:
        for worker in workers:
            stop_group(worker)
    # Both workers took steps of the run.
    for name, log in logs.items():
        assert log.read_text().count("succeeded in") >= 1, f"worker {name} ran no step"
    for name in accounts:
        assert f"account {name}: run " in synced.stdout
    engine = create_engine(env["WAREHOUSE_URL"])
    tables = ("klaviyo_campaigns", "klaviyo_flows", "klaviyo_lists", "klaviyo_events")
    try:
        with engine.connect() as conn:
            found = {
                t: {(r[0], r[1]) for r in conn.execute(text(f"SELECT account_id, id FROM {t}"))}
                for t in tables
            }
    finally:
        engine.dispose()
    expected: dict[str, set] = {t: set() for t in tables}
    for account in accounts.values():
        aid = account.account_id
        expected["klaviyo_campaigns"] |= {(aid, c.id) for c in account.campaigns}
        expected["klaviyo_flows"] |= {(aid, f.id) for f in account.flows}
        expected["klaviyo_lists"] |= {(aid, x.id) for x in account.lists}
        expected["klaviyo_events"] |= {(aid, account.event_id(i)) for i in range(account.total_events)}
    assert len({a.account_id for a in accounts.values()}) == 3
    for table in tables:
        assert found[table] == expected[table], table
