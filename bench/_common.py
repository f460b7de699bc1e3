"""Helpers for the benchmarks: a simulator in its own process, RSS sampling, a scratch warehouse schema."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
HEADERS = {
    "Authorization": "Klaviyo-API-Key pk_" + "b" * 34,
    "revision": "2026-07-15",
    "Accept": "application/vnd.api+json",
}
BENCH_KEY = "pk_" + "b" * 34


@contextlib.contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, psutil.Process]]:
    """`python -m klaviyo_sim --port 0 …` in its own process (its own core); yields (url, process)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "klaviyo_sim", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    try:
        yield match.group(1), psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class PeakRSS:
    """Samples a process's resident memory in the background; `.peak` in bytes, `.samples` over time."""

    def __init__(self, process: psutil.Process | None = None, every: float = 0.05):
        self.process = process or psutil.Process(os.getpid())
        self.every = every
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            try:
                rss = self.process.memory_info().rss
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self.samples.append((time.monotonic() - start, rss))
            time.sleep(self.every)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def mb(n: float) -> str:
    return f"{n / 1024 / 1024:.0f} MB"


def scratch_warehouse(name: str):
    """A migrated warehouse in a fresh schema of BENCH_DATABASE_URL (default: local postgres)."""
    import psycopg

    from resources.warehouse import Warehouse

    url = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{name}"')
    wh = Warehouse(url=url, schema_name=name)
    wh.migrate()
    return wh


def copy_frame(warehouse, conn, table: str, frame) -> int:
    """A plain COPY of a frame into a table (no stage, no merge): the benchmarks' baseline."""
    warehouse._copy_rows(conn, table, warehouse.table(table, conn), frame)
    return len(frame)


def unlimited_budget():
    """A rate budget that never waits: only for a simulator with its limits off (never for Klaviyo)."""
    from resources.ratelimit import RateBudget

    class UnlimitedBudget(RateBudget):
        def __init__(self) -> None:
            pass

        def acquire(self, bucket, tier) -> float:
            return 0.0

        def block(self, bucket, seconds) -> None:
            pass

        def observe(self, bucket, remaining, reset_seconds) -> None:
            pass

    return UnlimitedBudget()
