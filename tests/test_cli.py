"""The README's main command, end to end, in a subprocess on a fresh DAGSTER_HOME.

The commands are started when the session starts (see the `cli_*` fixtures in conftest): they run in the
background while the rest of the suite runs, and these tests, run last, check what each command did.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]


def _runs(listed: subprocess.CompletedProcess) -> list[dict]:
    """Each run (job, success, repository tag, code location, same job as loaded), as the instance of the DAGSTER_HOME lists them (the `RUNS`
    command's output), oldest first."""
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    return json.loads(listed.stdout.strip().splitlines()[-1])


def test_main_command_on_a_configured_postgres(cli_configured_sync):
    commands = cli_configured_sync.commands
    home = Path(cli_configured_sync.env["DAGSTER_HOME"])
    done = commands.result("sync")
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
    assert re.search(r"^checks \(run \S+\): \d+ passed, 0 failed", out, re.M), out[-2000:]
    again = commands.result("sync again")
    assert again.returncode == 0
    # `dagster dev` on this DAGSTER_HOME shows, under the job klaviyo_full_sync (Runs tab), two successful runs
    # per sync, oldest first: the partitioned sync, then the whole-table asset checks.
    runs = _runs(commands.result("runs"))
    assert [(r["job"], r["success"], r["partitioned"]) for r in runs] == 2 * [
        ("klaviyo_full_sync", True, True),
        ("klaviyo_full_sync", True, False),
    ]
    assert {r["repository"] for r in runs} == {"__repository__@klaviyo_pipeline"}
    # Re-executable from the UI as runs of the job it loads: the code location's origin and the same snapshot.
    assert {(r["location"], r["same_job"]) for r in runs} == {("klaviyo_pipeline", True)}

    # Everything older than the lookback is settled: a plan for the range asks only for the recent days.
    planned = commands.result("plan-stats")
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "4 report calls for" in planned.stdout and "fits" in planned.stdout


def test_main_command_with_nothing_configured_uses_embedded_postgres(cli_embedded_sync):
    done = cli_embedded_sync.commands.result("sync")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded PostgreSQL" in done.stdout and "succeeded" in done.stdout
    assert (cli_embedded_sync.home / "state" / "dagster_home" / "dagster.yaml").exists()
    # What a new user sees holds no warning (Dagster's expected ones and platformdirs' fallback are silenced).
    assert "Warning" not in done.stdout + done.stderr, done.stderr[-3000:]


def test_dagster_cli_validates_the_workspace(cli_workspace_validation):
    done = cli_workspace_validation.commands.result("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klaviyo_pipeline" in done.stdout + done.stderr


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start", "2026-13-01"), "--start '2026-13-01' is not a date: give YYYY-MM-DD, from "),
        (("--start", "2026-11-10", "--end", "2026-11-01"), "--start 2026-11-10 is after --end 2026-11-01"),
        (("--start", "2030-01-01"), "--start 2030-01-01 is outside the partitions: from "),
        (("--end", "2019-01-01"), "--end 2019-01-01 is outside the partitions"),
    ],
)
def test_bad_dates_are_one_line_errors_before_anything_starts(tmp_path, args, message):
    env = {**cli_env(tmp_path), "KLAVIYO_START_DATE": "2026-01-01"}
    done = _cli(env, "sync", *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "state" / "pgdata").exists()  # nothing was started


def test_an_unreachable_warehouse_is_a_one_line_error(tmp_path):
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/nowhere"
    done = _cli(cli_env(tmp_path, WAREHOUSE_URL=url, DAGSTER_PG_URL=url), "sync")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert (
        "\n" not in line
        and "cannot reach the warehouse at postgresql+psycopg://postgres:***@127.0.0.1:1" in line
    )
    assert "Traceback" not in done.stderr and "secret" not in done.stdout + done.stderr


def test_a_refused_key_is_a_one_line_error_before_the_run(tmp_path, new_database, make_sim):
    sim = make_sim(api_keys={"pk_" + "r" * 34})
    warehouse, dagster = new_database(), new_database()
    env = cli_env(
        tmp_path,
        WAREHOUSE_URL=warehouse.replace("postgresql://", "postgresql+psycopg://", 1),
        DAGSTER_PG_URL=dagster.replace("postgresql://", "postgresql+psycopg2://", 1),
        KLAVIYO_API_KEY="pk_" + "w" * 34,
        KLAVIYO_BASE_URL=sim.url,
    )
    done = _cli(env, "sync")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    line = done.stderr.strip()
    assert "\n" not in line and "answered 401" in line and "check KLAVIYO_API_KEY" in line
    assert "Traceback" not in done.stderr and "pk_www" not in done.stdout + done.stderr
    assert "syncing" not in done.stdout  # no run started
