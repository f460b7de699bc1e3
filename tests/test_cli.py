"""The README's main command, end to end, in a subprocess on a fresh DAGSTER_HOME.

The commands are started when the session starts (see the `cli_*` fixtures in conftest): they run in the
background while the rest of the suite runs, and these tests, run last, check what each command did.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def _runs(listed: subprocess.CompletedProcess) -> list[bool]:
    """Each run's success, as the instance of the DAGSTER_HOME lists them (the `RUNS` command's output)."""
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
    runs = _runs(commands.result("runs after the first sync"))
    assert len(runs) == 1 and runs[0]  # `dagster dev` on this DAGSTER_HOME shows the run, a success

    again = commands.result("sync again")
    assert again.returncode == 0
    assert len(_runs(commands.result("runs after the second sync"))) == 2

    # Everything older than the lookback is settled: a plan for the range asks only for the recent days.
    planned = commands.result("plan-stats")
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert "4 report calls for" in planned.stdout and "fits" in planned.stdout


def test_main_command_with_nothing_configured_uses_embedded_postgres(cli_embedded_sync):
    done = cli_embedded_sync.commands.result("sync")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embedded PostgreSQL" in done.stdout and "succeeded" in done.stdout
    assert (cli_embedded_sync.home / "state" / "dagster_home" / "dagster.yaml").exists()


def test_dagster_cli_validates_the_workspace(cli_workspace_validation):
    done = cli_workspace_validation.commands.result("validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "klaviyo_pipeline" in done.stdout + done.stderr
