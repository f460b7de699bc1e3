"""Helpers for the benchmarks: a simulator in its own process (optionally counting its requests), RSS
sampling, a scratch warehouse schema."""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import signal
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
    with _simulator([sys.executable, "-m", "klaviyo_sim", "--port", "0", *args]) as (url, proc):
        yield url, psutil.Process(proc.pid)


@contextlib.contextmanager
def counting_simulator_process(*args: str) -> Iterator[tuple[str, RequestCounts]]:
    """The simulator of `simulator_process`, counting the requests it answers by operation and status; yields
    (url, counts), `counts.read()` giving the requests so far."""
    with _simulator([sys.executable, str(Path(__file__).resolve()), _COUNTING, "--port", "0", *args]) as (
        url,
        proc,
    ):
        yield url, RequestCounts(proc)


@contextlib.contextmanager
def _simulator(argv: list[str]) -> Iterator[tuple[str, subprocess.Popen]]:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"simulator did not start: {line!r}")
    try:
        yield match.group(1), proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


_COUNTING = "counting-simulator"
_COUNTS_LINE = "requests by operation: "


class RequestCounts:
    """The request counts of a counting simulator process (see `counting_simulator_process`)."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def read(self) -> collections.Counter[tuple[str, int]]:
        """{(operation, HTTP status): requests} answered so far (the operation is the spec's operationId, or
        the path for a request no operation matched)."""
        self._proc.send_signal(signal.SIGUSR1)
        for line in self._proc.stdout:
            if line.startswith(_COUNTS_LINE):
                rows = json.loads(line[len(_COUNTS_LINE) :])
                return collections.Counter({(op, status): n for op, status, n in rows})
        raise RuntimeError("the counting simulator exited without its counts")


class _Tally:
    """Stands in for the simulator's request log: keeps a count per (operation, status), not the records."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, int]] = collections.Counter()
        self._lock = threading.Lock()

    def append(self, record) -> None:
        with self._lock:
            self.counts[(record.operation or record.path, record.status)] += 1

    def __iter__(self):
        return iter(())

    def rows(self) -> list[list]:
        with self._lock:
            return [[op, status, n] for (op, status), n in sorted(self.counts.items())]


def _serve_counting(argv: list[str]) -> None:
    """Run `python -m klaviyo_sim` with these arguments, its request log replaced by a `_Tally`; SIGUSR1 prints
    the counts as one line."""
    import klaviyo_sim.__main__ as cli
    from klaviyo_sim.server import Simulator

    tally = _Tally()
    serve = Simulator.serve_forever

    def serve_counting(sim: Simulator) -> None:
        sim.requests = tally
        serve(sim)

    Simulator.serve_forever = serve_counting
    signal.signal(signal.SIGUSR1, lambda *_: print(_COUNTS_LINE + json.dumps(tally.rows()), flush=True))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cli.main(argv)


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


if __name__ == "__main__" and sys.argv[1:2] == [_COUNTING]:
    _serve_counting(sys.argv[2:])
