"""Runs spread over Celery workers: two `klaviyo-pipeline worker` processes take the steps of a 30-day range run
started with KLAVIYO_EXECUTOR=celery (broker: RabbitMQ on 127.0.0.1:5672), against the shared Dagster instance
and warehouse in Postgres; the warehouse ends up equal to the simulator's account."""

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from klaviyo_sim import Account
from tests.conftest import TEST_KEY, cli_env

ROOT = Path(__file__).resolve().parents[1]


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


def _start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not _rabbitmq_up(), reason="no RabbitMQ on 127.0.0.1:5672")
def test_two_celery_workers_run_a_30_day_range_and_the_warehouse_equals_the_simulator(
    tmp_path, make_sim, new_database
):
    sim = make_sim(Account(seed=7))
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
        KLAVIYO_API_KEY=TEST_KEY,
        KLAVIYO_BASE_URL=sim.url,
        KLAVIYO_RATE_TIME_SCALE="0.01",
        KLAVIYO_EXECUTOR="celery",
        KLAVIYO_CELERY_QUEUE=f"kp-test-{uuid.uuid4().hex[:8]}",  # this test's own queue on the shared broker
    )
    env["KLAVIYO_START_DATE"] = start
    migrated = subprocess.run(
        [sys.executable, "-m", "pipelines", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    logs = {f"{name}-{uuid.uuid4().hex[:6]}": tmp_path / f"{name}.log" for name in ("w1", "w2")}
    workers = [
        _start([sys.executable, "-m", "pipelines", "worker", "--name", name, "--concurrency", "1"], env, log)
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
            [sys.executable, "-m", "pipelines", "sync", "--start", start],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    finally:
        for worker in workers:
            _stop(worker)
    # Both workers took steps of the run.
    for name, log in logs.items():
        assert log.read_text().count("succeeded in") >= 1, f"worker {name} ran no step"
    engine = create_engine(env["WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            ids = {
                table: {r[0] for r in conn.execute(text(f"SELECT id FROM {table}"))}
                for table in ("klaviyo_campaigns", "klaviyo_flows", "klaviyo_lists", "klaviyo_events")
            }
            accounts = {r[0] for r in conn.execute(text("SELECT DISTINCT account_id FROM klaviyo_events"))}
    finally:
        engine.dispose()
    account = sim.account
    assert ids["klaviyo_campaigns"] == {c.id for c in account.campaigns}
    assert ids["klaviyo_flows"] == {f.id for f in account.flows}
    assert ids["klaviyo_lists"] == {x.id for x in account.lists}
    assert ids["klaviyo_events"] == {account.event_id(i) for i in range(account.total_events)}
    assert accounts == {account.account_id}
