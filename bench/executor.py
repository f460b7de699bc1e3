"""A launched run's cost: klaviyo_full_sync over a range of days executed by the jobs' own executor (a process
per step, as runs from the UI, schedules and sensors are), with step processes forked from a `forkserver`
preloaded with the code location (the project's default), against the baseline measured in the same run:
Dagster's default start method, `spawn` (each step process imports Dagster, pandas and the project afresh).

Each run is `dagster job execute` on fresh databases (warehouse, Dagster storage) and a fresh instance, against
the simulator in its own process (Klaviyo's limits on a 500x faster clock, which the client is told about).
CPU is the machine's busy CPU-seconds over the run (from /proc/stat: every process, Postgres and the simulator
included, the same work in both), so run it on an otherwise idle machine.

    uv run --frozen python bench/executor.py [--days 3] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from _common import BENCH_KEY, ROOT, simulator_process

from pipelines.environment import DAGSTER_RUN_EVENTS, SIM_TIME_SCALE, with_database

ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TIME_SCALE = str(SIM_TIME_SCALE)  # the bundled simulator's clock
MODES = {"forkserver (default)": None, "spawn (Dagster's default)": {"spawn": {}}}


def busy_cpu_seconds() -> float:
    """The machine's CPU-seconds spent outside idle and I/O wait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def one_run(sim_url: str, days: int, start_method: dict | None) -> dict[str, float]:
    """One klaviyo_full_sync over the last `days` days with the given start method (None: the default)."""
    names = [f"kp_bench_exec_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    home = Path(tempfile.mkdtemp(prefix="bench_executor_"))
    try:
        shutil.copy(ROOT / "instance" / "dagster.yaml", home / "dagster.yaml")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))
        }
        env.update(
            WAREHOUSE_URL=with_database(ADMIN_URL, names[0], "psycopg"),
            DAGSTER_PG_URL=with_database(ADMIN_URL, names[1], "psycopg2"),
            DAGSTER_HOME=str(home),
            KLAVIYO_API_KEY=BENCH_KEY,
            KLAVIYO_BASE_URL=sim_url,
            KLAVIYO_RATE_TIME_SCALE=TIME_SCALE,
            KLAVIYO_RATE_STATE_DIR=str(home / "rate"),
            **DAGSTER_RUN_EVENTS,  # as `klaviyo-pipeline` sets them
        )
        today = datetime.now(UTC).date()
        tags = {
            "dagster/asset_partition_range_start": (today - timedelta(days=days - 1)).isoformat(),
            "dagster/asset_partition_range_end": today.isoformat(),
        }
        argv = [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "pipelines.definitions",
            "-a",
            "defs",
        ]
        argv += ["-j", "klaviyo_full_sync", "--tags", json.dumps(tags)]
        if start_method is not None:
            config = home / "run_config.yaml"
            config.write_text(
                json.dumps({"execution": {"config": {"multiprocess": {"start_method": start_method}}}})
            )
            argv += ["-c", str(config)]
        cpu, began = busy_cpu_seconds(), time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.monotonic() - began, busy_cpu_seconds() - cpu
        if done.returncode != 0 or "RUN_SUCCESS" not in done.stdout + done.stderr:
            raise RuntimeError(f"the run failed:\n{(done.stdout + done.stderr)[-3000:]}")
        return {"wall": wall, "cpu": cpu}
    finally:
        shutil.rmtree(home, ignore_errors=True)
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=3, help="the range's days, ending today")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode (alternating), the median shown")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with simulator_process("--time-scale", TIME_SCALE) as (sim_url, _):
        for _ in range(args.rounds):
            for mode, start_method in MODES.items():
                results[mode].append(one_run(sim_url, args.days, start_method))
    print(f"klaviyo_full_sync over {args.days} days, the multiprocess executor, {args.rounds} round(s):")
    figures = {}
    for mode, runs in results.items():
        cpu = sorted(r["cpu"] for r in runs)[len(runs) // 2]
        wall = sorted(r["wall"] for r in runs)[len(runs) // 2]
        figures[mode] = cpu
        print(f"  {mode:28} {cpu:7.1f} cpu-s  {wall:6.1f} s wall")
    default, baseline = figures.values()
    print(f"  forkserver / spawn: {default / baseline:.2f}x the CPU")


if __name__ == "__main__":
    main()
