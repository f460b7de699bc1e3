"""Runs that heal themselves: a run whose processes are killed (`kill -9`) mid-load is found dead by Dagster's run
monitoring (through pipelines/run_launcher.py's worker health check), marked failed, retried by run retries, and
the retry leaves the warehouse equal to the simulator.

This runs the real thing: `dagster-daemon` (monitoring, retries, run queue, sensors) over the project's
workspace, the instance configured from instance/dagster.yaml, a run launched with `dagster job launch`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import create_engine, text

from klaviyo_sim import Account
from tests.conftest import cli_env, migrate_warehouse

ROOT = Path(__file__).resolve().parents[1]
UTC = dt.UTC


def _instance_yaml(home: Path) -> None:
    """The project's instance configuration, with run monitoring polling every 2 s instead of 15."""
    config = (ROOT / "instance" / "dagster.yaml").read_text()
    assert "poll_interval_seconds: 15" in config
    (home / "dagster.yaml").write_text(
        config.replace("poll_interval_seconds: 15", "poll_interval_seconds: 2")
    )


def _wait(what: str, predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _tree(pid: int) -> list[int]:
    """A process and its descendants (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []

    def walk(p: int) -> None:
        for c in children.get(p, []):
            walk(c)
        out.append(p)

    walk(pid)
    return out


@pytest.mark.long
def test_a_killed_run_is_marked_failed_and_its_retry_loads_everything(
    tmp_path, make_sim, new_database, monkeypatch
):
    from pipelines.run_launcher import worker_pid

    sim = make_sim(Account(seed=7))
    # Every events page takes 3 s until the kill, so the run is surely mid-load when it dies.
    sim.faults.operations, sim.faults.slow_seconds, sim.faults.rate_slow = {"get_events"}, 3.0, 1.0
    warehouse_url, dagster_url = new_database(), new_database()  # empty; dropped after the test
    home = tmp_path / "dagster_home"
    home.mkdir()
    _instance_yaml(home)
    env = cli_env(
        tmp_path,
        WAREHOUSE_URL=warehouse_url.replace("postgresql://", "postgresql+psycopg://"),
        DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://"),
        DAGSTER_HOME=str(home),
        KLAVIYO_API_KEY="pk_" + "h" * 34,
        KLAVIYO_BASE_URL=sim.url,
        KLAVIYO_RATE_TIME_SCALE="0.01",
        KLAVIYO_STEP_RETRY_DELAY="0",
    )
    migrate_warehouse(env["WAREHOUSE_URL"])
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", env["DAGSTER_PG_URL"])
    with dg.DagsterInstance.get():  # its storage made once, before the daemon and the launch race to make it
        pass
    daemon = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=(tmp_path / "daemon.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    engine = create_engine(env["WAREHOUSE_URL"])
    try:
        start = env["KLAVIYO_START_DATE"]
        today = dt.datetime.now(UTC).date().isoformat()
        tags = (
            f'{{"dagster/asset_partition_range_start": "{start}", '
            f'"dagster/asset_partition_range_end": "{today}"}}'
        )
        launched = subprocess.run(
            [sys.executable, "-m", "dagster", "job", "launch", "-w", str(ROOT / "workspace.yaml"),
             "-j", "klaviyo_sync_events", "--tags", tags],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
        with dg.DagsterInstance.get() as instance:
            first = _wait(
                "the launched run",
                lambda: instance.get_runs(dg.RunsFilter(job_name="klaviyo_sync_events"), limit=1),
                60,
            )[0]

            def under_way():
                with engine.connect() as conn:
                    row = conn.execute(
                        text("SELECT status, run_id FROM klaviyo_sync_status WHERE entity = 'events'")
                    ).first()
                return row is not None and row.status == "running" and row.run_id == first.run_id

            _wait("the events sync to be under way", under_way, 120)
            pid = worker_pid(instance, first.run_id)
            assert pid is not None, [
                (r.event_log_entry.dagster_event_type, r.event_log_entry.user_message)
                for r in instance.get_records_for_run(first.run_id).records
            ]
            for p in _tree(pid):  # the run worker and its step process, mid-load
                os.kill(p, signal.SIGKILL)
            sim.faults.rate_slow = 0.0

            failed = _wait(
                "run monitoring to mark the dead run failed",
                lambda: (
                    (r := instance.get_run_by_id(first.run_id)).status == dg.DagsterRunStatus.FAILURE and r
                ),
                90,
            )
            assert failed.status == dg.DagsterRunStatus.FAILURE
            retry = _wait(
                "the retry to succeed",
                lambda: next(
                    (
                        r
                        for r in instance.get_runs(
                            dg.RunsFilter(tags={"dagster/parent_run_id": first.run_id})
                        )
                        if r.status == dg.DagsterRunStatus.SUCCESS
                    ),
                    None,
                ),
                180,
            )
        with engine.connect() as conn:
            interrupted = conn.execute(
                text("SELECT count(*) FROM klaviyo_sync_runs WHERE entity = 'events' AND run_id = :r"),
                {"r": first.run_id},
            ).scalar_one()
            state = conn.execute(
                text("SELECT status, run_id FROM klaviyo_sync_status WHERE entity = 'events'")
            ).one()
            loaded = {r.id for r in conn.execute(text("SELECT id FROM klaviyo_events"))}
        assert interrupted == 0  # the killed run recorded no outcome of its own
        assert (state.status, state.run_id) == ("success", retry.run_id)
        # A range from the first partition to today's (live, open-ended) reads every event the account has.
        want = {sim.account.event_id(i) for i in range(sim.account.total_events)}
        assert loaded == want and want
        # Dagster found the worker dead: the code server that started it (it watches its run processes), or run
        # monitoring through the launcher's health check (when the code server cannot tell), whichever came first.
        with dg.DagsterInstance.get() as instance:
            messages = [
                r.event_log_entry.dagster_event.message or ""
                for r in instance.get_records_for_run(first.run_id, limit=100000).records
                if r.event_log_entry.dagster_event is not None
            ]
        explained = [
            m for m in messages if "is gone: killed or crashed" in m or "Run execution process for" in m
        ]
        assert explained, [m for m in messages if "fail" in m.lower() or "process" in m.lower()][-10:]
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
        engine.dispose()


def test_the_health_check_fails_only_a_worker_known_to_be_gone():
    from dagster._core.launcher import WorkerStatus

    from pipelines.run_launcher import PID_TAG, MonitoredRunLauncher

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with dg.DagsterInstance.ephemeral() as instance:
        launcher = MonitoredRunLauncher()
        launcher.register_instance(instance)

        def status(tags: dict) -> WorkerStatus:
            run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(), tags=tags)
            return launcher.check_run_worker_health(run).status

        assert status({PID_TAG: str(os.getpid())}) == WorkerStatus.RUNNING  # alive
        assert status({PID_TAG: str(gone.pid)}) == WorkerStatus.FAILED  # exited and reaped
        assert status({}) == WorkerStatus.RUNNING  # not recorded: no evidence of death
