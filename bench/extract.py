"""Events per second pulled by the client (limits off, page size 1000) against a bare requests loop over the
same pages in the same run, and the client's memory over 1,000,000 events (plus the few future-dated events
the simulated account holds: both loops read every event it has)."""

from __future__ import annotations

import gc
import os
import time

import psutil
import requests
from _common import BENCH_KEY, HEADERS, PeakRSS, mb, simulator_process

N = int(os.environ.get("BENCH_EVENTS", "1000000"))


def bare(url: str) -> int:
    session = requests.Session()
    n, next_url = 0, f"{url}/api/events?page[size]=1000"
    while next_url:
        body = session.get(next_url, headers=HEADERS, timeout=60).json()
        n += len(body["data"])
        next_url = body["links"]["next"]
    return n


def main() -> None:
    from resources.klaviyo import KlaviyoClient

    me = psutil.Process(os.getpid())
    with simulator_process("--no-rate-limits", "--events", str(N)) as (url, _proc):
        began = time.perf_counter()
        n_bare = bare(url)
        bare_s = time.perf_counter() - began

        gc.collect()
        baseline = me.memory_info().rss
        client = KlaviyoClient(BENCH_KEY, base_url=url)
        n_client, checkpoints = 0, {}
        began = time.perf_counter()
        with PeakRSS(me) as peak:
            for page in client.list_window("events"):
                n_client += len(page.records)
                for mark in (N // 4, N // 2, N):
                    if mark not in checkpoints and n_client >= mark:
                        checkpoints[mark] = me.memory_info().rss
        client_s = time.perf_counter() - began
    if n_bare != n_client or n_client < N:
        raise SystemExit(f"the loops read different event counts: bare {n_bare:,}, client {n_client:,}")
    bare_rate, client_rate = n_bare / bare_s, n_client / client_s
    print(f"events: {n_client:,} at page size 1000, simulator in its own process, limits off")
    print(f"bare requests loop: {bare_rate:>9,.0f} events/s ({bare_s:.1f} s)")
    print(
        f"KlaviyoClient:      {client_rate:>9,.0f} events/s ({client_s:.1f} s, {client.stats.totals().calls} calls)"
    )
    print(f"ratio client/bare: {client_rate / bare_rate:.2f}x (target >= 0.8x)")
    growth = {k: mb(v - baseline) for k, v in checkpoints.items()}
    print(
        f"client memory above the interpreter: peak {mb(peak.peak - baseline)}; at {growth} (target flat, < 150 MB)"
    )


if __name__ == "__main__":
    main()
