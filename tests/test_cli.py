"""The README's main command, end to end, in a subprocess on a fresh DAGSTER_HOME."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from tests.conftest import db_url

ROOT = Path(__file__).resolve().parents[1]


def _clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))}
    recent = (dt.date.today() - dt.timedelta(days=20)).isoformat()
    env.update(
        KLAVIYO_PIPELINE_HOME=str(tmp_path / "state"),
        KLAVIYO_START_DATE=recent,
        KLAVIYO_RATE_STATE_DIR=str(tmp_path / "rate"),
        **extra,
    )
    return env


@pytest.fixture
def fresh_databases(admin_url):
    names = [f"kp_e2e_{uuid.uuid4().hex[:8]}" for _ in range(2)]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for n in names:
            conn.execute(f'CREATE DATABASE "{n}"')
    yield [db_url(admin_url, n) for n in names]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for n in names:
            conn.execute(f'DROP DATABASE "{n}" WITH (FORCE)')


def _sync(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", "sync"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _runs(dagster_home: Path, env: dict[str, str]) -> list:
    old = dict(os.environ)
    os.environ.update({k: env[k] for k in ("DAGSTER_PG_URL",) if k in env})
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            return instance.get_runs()
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_main_command_on_a_configured_postgres(tmp_path, fresh_databases):
    warehouse, dagster_db = fresh_databases
    home = tmp_path / "dagster_home"
    env = _clean_env(
        tmp_path,
        WAREHOUSE_URL=warehouse.replace("postgresql://", "postgresql+psycopg://"),
        DAGSTER_PG_URL=dagster_db.replace("postgresql://", "postgresql+psycopg2://"),
        DAGSTER_HOME=str(home),
    )
    done = _sync(env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "using the bundled simulator" in out and "succeeded" in out
    for table in (
        "klaviyo_campaigns",
        "klaviyo_flows",
        "klaviyo_forms",
        "klaviyo_segments",
        "klaviyo_lists",
        "klaviyo_metrics",
        "klaviyo_tags",
    ):
        line = next(line for line in out.splitlines() if line.startswith(table + " "))
        assert int(line.split()[1]) > 0 and "success" in line
    for table in (
        "klaviyo_campaign_messages",
        "klaviyo_flow_stats_daily",
        "klaviyo_form_stats_daily",
        "klaviyo_segment_stats_daily",
    ):
        line = next(line for line in out.splitlines() if line.startswith(table + " "))
        assert int(line.split()[1]) > 0, line
    assert (home / "dagster.yaml").exists()
    runs = _runs(home, env)
    assert len(runs) == 1 and runs[0].is_success  # `dagster dev` on this DAGSTER_HOME shows the run

    again = _sync(env)
    assert again.returncode == 0
    assert len(_runs(home, env)) == 2

    # Everything older than the lookback is settled: a plan for the range asks only for the recent days.
    planned = subprocess.run(
        [sys.executable, "-m", "pipelines", "plan-stats"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "4 report calls for" in planned.stdout and "fits" in planned.stdout


def test_main_command_with_nothing_configured_uses_embedded_postgres(tmp_path):
    env = _clean_env(tmp_path)
    done = _sync(env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded PostgreSQL" in done.stdout and "succeeded" in done.stdout
    assert (tmp_path / "state" / "dagster_home" / "dagster.yaml").exists()


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = _clean_env(tmp_path, DAGSTER_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klaviyo_pipeline" in done.stdout + done.stderr
