"""README's main command on a fresh state: wall time of `klaviyo-pipeline sync` with nothing configured
(embedded Postgres, the bundled simulator, a new Dagster instance), with its parts timed from its output.

Figures are measured in the same run against baselines:
- `dagster defaults`: the same code with Dagster's own event settings (one planned event per partition, events
  written one by one), i.e. what the project's DAGSTER_RUN_EVENTS buy;
- `--before REV` (e.g. the commit before a change): the same command from a checkout of that revision.

    uv run --frozen python bench/first_run.py [--before 2b8932d] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from _common import ROOT

# The parts: setup ends with the line "syncing …"; the sync and the checks run say their own durations
# ("synced in 12.3 s", "checks (run …): 60 passed, 0 failed in 4.5 s"); the rest is the summary and shutdown.
SETUP, SYNC, CHECKS, REST = (
    "setup: Postgres, simulator, migrations, account",
    "the sync run (every asset, one run)",
    "the asset checks (their own run)",
    "summary and shutdown",
)
PARTS = [SETUP, SYNC, CHECKS, REST]
SYNCING = re.compile(r"^syncing ")
SYNCED = re.compile(r"^synced in ([\d.]+) s")
CHECKED = re.compile(r"^checks \(run .*? in ([\d.]+) s$")
UNSET = ("WAREHOUSE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME", "KLAVIYO_API_KEY", "KLAVIYO_BASE_URL")


def timed_sync(checkout: Path, extra_env: dict[str, str]) -> dict[str, float]:
    """One fresh-state `klaviyo-pipeline sync` in `checkout`; seconds per part and in all."""
    with tempfile.TemporaryDirectory(prefix="first_run_") as state:
        env = {k: v for k, v in os.environ.items() if k not in UNSET}
        env.update(extra_env, KLAVIYO_PIPELINE_HOME=state, PYTHONUNBUFFERED="1")
        began = time.monotonic()
        proc = subprocess.Popen(
            ["uv", "run", "--frozen", "klaviyo-pipeline", "sync"],
            cwd=checkout,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        parts: dict[str, float] = {}
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if SETUP not in parts and SYNCING.search(line):
                parts[SETUP] = time.monotonic() - began
            for name, pattern in ((SYNC, SYNCED), (CHECKS, CHECKED)):
                if match := pattern.search(line):
                    parts[name] = float(match.group(1))
        if proc.wait() != 0:
            sys.exit(f"the sync failed in {checkout}:\n{''.join(lines[-30:])}")
        total = time.monotonic() - began
    parts[REST] = total - sum(parts.values())
    parts["total"] = total
    return parts


@contextlib.contextmanager
def checkout_of(rev: str) -> Iterator[Path]:
    """A worktree of `rev` with its own environment from its lock file (uv's cache makes this seconds)."""
    with tempfile.TemporaryDirectory(prefix="first_run_rev_") as where:
        path = Path(where) / "checkout"
        subprocess.run(["git", "worktree", "add", "-q", "--detach", str(path), rev], cwd=ROOT, check=True)
        try:
            subprocess.run(
                ["uv", "sync", "--frozen", "--compile-bytecode", "-q"], cwd=path, check=True
            )  # fmt: skip
            yield path
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", help="also time this git revision (e.g. the commit before a change)")
    parser.add_argument("--rounds", type=int, default=1, help="runs per configuration (medians are shown)")
    parser.add_argument(
        "--no-defaults", action="store_true", help="skip the Dagster-defaults baseline (about 4 minutes)"
    )
    args = parser.parse_args()

    configs: list[tuple[str, contextlib.AbstractContextManager, dict[str, str]]] = [
        ("this checkout", contextlib.nullcontext(ROOT), {}),
        (
            "this checkout, Dagster's defaults",
            contextlib.nullcontext(ROOT),
            {"DAGSTER_EVENT_BATCH_SIZE": "0", "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "false"},
        ),
    ]
    if args.no_defaults:
        del configs[1]
    if args.before:
        configs.append((f"revision {args.before}", checkout_of(args.before), {}))

    results: dict[str, dict[str, float]] = {}
    for label, checkout, env in configs:
        with checkout as path:
            rounds = [timed_sync(path, env) for _ in range(args.rounds)]
        results[label] = {k: statistics.median(r[k] for r in rounds if k in r) for k in rounds[0]}
        print(f"{label}: {results[label]['total']:.1f} s", flush=True)

    print()
    names = [*PARTS, "total"]
    width = max(map(len, names))
    print(f"{'part':<{width}}  " + "  ".join(f"{label[:28]:>28}" for label in results))
    for name in names:
        cells = [f"{r[name]:>26.1f} s" if name in r else f"{'-':>28}" for r in results.values()]
        print(f"{name:<{width}}  " + "  ".join(cells))
    base = results["this checkout"]["total"]
    print(f"\ntarget: 30 s or less; this checkout {base:.1f} s", end="")
    for label, r in results.items():
        if label != "this checkout":
            print(f"; {r['total'] / base:.1f}x faster than {label}", end="")
    print()


if __name__ == "__main__":
    main()
