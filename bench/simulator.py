"""Events served per second by the simulator at page size 1000 with limits off (a bare requests loop as the
client), and the simulator's peak memory while serving an account of 10 million events."""

from __future__ import annotations

import datetime as dt
import time

import requests
from _common import HEADERS, PeakRSS, mb, simulator_process

SERVE_EVENTS = 300_000


def drain(url: str, limit: int) -> int:
    session = requests.Session()
    n, next_url = 0, f"{url}/api/events?page[size]=1000"
    while next_url and n < limit:
        body = session.get(next_url, headers=HEADERS, timeout=60).json()
        n += len(body["data"])
        next_url = body["links"]["next"]
    return n


def main() -> None:
    with simulator_process("--no-rate-limits", "--events", str(SERVE_EVENTS)) as (url, proc):
        drain(url, 5_000)  # warm up
        began = time.perf_counter()
        n = drain(url, SERVE_EVENTS)
        seconds = time.perf_counter() - began
        print(
            f"served {n:,} events at page size 1000 in {seconds:.1f} s: {n / seconds:,.0f} events/s (target >= 20,000)"
        )

    with simulator_process("--no-rate-limits", "--events", "10000000", "--history-days", "365") as (
        url,
        proc,
    ):
        idle = proc.memory_info().rss
        with PeakRSS(proc) as peak:
            session = requests.Session()
            today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            served = 0
            # Pages from all over the year (bisection into the 10 M-event history), then 100 pages in a row.
            for day in range(0, 365, 5):
                start = (today - dt.timedelta(days=365 - day)).strftime("%Y-%m-%dT%H:%M:%SZ")
                body = session.get(
                    f"{url}/api/events",
                    params={"filter": f"greater-or-equal(datetime,{start})", "page[size]": "1000"},
                    headers=HEADERS,
                    timeout=60,
                ).json()
                served += len(body["data"])
            served += drain(url, 100_000)
        print(
            f"10,000,000-event account: idle {mb(idle)}, peak {mb(peak.peak)} while serving {served:,} events "
            "from across the history (target < 200 MB)"
        )


if __name__ == "__main__":
    main()
