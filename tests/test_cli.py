"""The README's main command, end to end, in a subprocess on a fresh DAGSTER_HOME.

The first command of each test is started when the session starts (see `STARTED_EARLY` in conftest): it runs
in the background while the rest of the suite runs, and these tests, run last, wait for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from tests.conftest import ROOT


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


def test_main_command_on_a_configured_postgres(cli_configured_sync):
    env = cli_configured_sync.env
    home = Path(env["DAGSTER_HOME"])
    done = cli_configured_sync.started.result()
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


def test_main_command_with_nothing_configured_uses_embedded_postgres(cli_embedded_sync):
    done = cli_embedded_sync.started.result()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded PostgreSQL" in done.stdout and "succeeded" in done.stdout
    assert (cli_embedded_sync.home / "state" / "dagster_home" / "dagster.yaml").exists()


def test_dagster_cli_validates_the_workspace(cli_workspace_validation):
    done = cli_workspace_validation.started.result()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klaviyo_pipeline" in done.stdout + done.stderr
