"""Backfill throughput of four simulated Klaviyo accounts (rate limits on) on 1, 2 and 4 Celery workers, against
the API limits the accounts allow together, and the 429s seen (target 0).

For each worker count W: a simulator over real HTTP serving four accounts (one per key, limits on, its clock and
the client's scaled alike by `--time-scale`), a fresh warehouse and Dagster instance database (migrated), W
`klaviyo-pipeline worker` processes (one step at a time each) on a queue of this run's own, one rate budget in
Redis shared by every worker, then the four accounts' event backfills started at once
(`sync --account NAME --entity events`: a run each, one step each), so their steps compete for the W workers.

Measured from the simulator's request log (get_events only): requests answered 200 and 429 per account, the
first and last request; events loaded, per account, from the warehouse (asserted equal to the simulator's).
- throughput: events (and requests) / the span from the first get_events request to the last, all accounts;
- allowed: for each of the 4 accounts, Klaviyo's get_events limits (the tier the catalogue gives the events
  endpoint: a burst per 1 s and a steady per 60 s, both windows stretched by S), i.e. the most requests a
  sliding log kept below both lets through in that span; summed over the accounts; share = made / allowed;
- efficiency W -> 2W: (throughput at 2W / throughput at W) / 2.

Each worker count gets a simulator of its own (same seeds, same records): a window of one phase's requests
would otherwise still count, at the server and in the budget, in the next phase's first minute (of scaled time).

Same-run baseline: the machine's ceiling, a bare fetch of the first pages of the same accounts (plain `requests`,
one process per account at once, page size 1000) from a simulator with its limits off, nothing else loaded.

    uv run --frozen python bench/scale.py [--time-scale 10] [--events 200000] [--workers 1,2,4]

The defaults, and what they can show on a small machine: Klaviyo admits 350 get_events requests per burst
window and 3500 per steady window, per account. A window can only hold an account back once it has made
more than 350 requests (350,000 events) inside one burst window, or 3500 inside one steady window. On 2 shared
cores, one worker reads one account at 5-9 requests/s, and the pipeline as a whole tops out at 6.5-8/s with 1, 2
or 4 workers. So the burst window would bind only from S = 350 / 8, about 44 (and for the four accounts together,
at 2 requests/s each, only from S of about 175). The steady rate, 3500 / (60 S) per account, falls below one
account's 6-8/s from S of about 8, and the summed one below 8/s from S of about 30; but it binds only in runs
longer than its 60 S seconds (8 to 30 minutes). With phases of 4, 2 and 1 account(s) at a time, either way
takes well over the bench's ~10 minutes, so the limits cannot bind here within it. `--time-scale 10` puts one
account's sustained limit (5.8/s) below what one worker reads for it, and the summed one (23/s) above the
machine's ceiling. 200,000 events per account keep each phase about 2-3 minutes. The output prints the time
scales at which the limits would bind, from this run's own rates.

Exits non-zero when a 429 was seen or an account's events in the warehouse differ from the simulator's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import HEADERS, ROOT

from pipelines.environment import start_group, stop_group

NAMES = ("acme", "globex", "initech", "umbrella")
SEEDS = {name: 41 + k for k, name in enumerate(NAMES)}
OPERATION = "get_events"
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKFILL_DAYS = 30  # the range each sync names; its first partition reads the history before it too
_DRAIN = "_drain"
PREPARE_INSTANCE = "import dagster as dg; dg.DagsterInstance.get().dispose()"


# -- the limits ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """get_events' limits per account: `burst` requests per `burst_window` s, `steady` per `steady_window` s."""

    burst: int
    steady: int
    burst_window: float
    steady_window: float

    @classmethod
    def for_events(cls, time_scale: float) -> Limits:
        """The events endpoint's tier in the catalogue, its windows (1 s, 60 s) stretched by the time scale."""
        from resources.catalogue import CATALOGUE

        tier = CATALOGUE["events"].endpoint.tier
        return cls(tier.burst, tier.steady, 1.0 * time_scale, 60.0 * time_scale)

    def allowed(self, span: float) -> tuple[int, str]:
        """The most requests one account may make in `span` seconds (first to last request): a sliding log
        kept below both limits (what the client keeps) lets through `limit` per window, and a span of T
        seconds is covered by floor(T / window) + 1 windows; and which window gives the smaller figure."""
        burst = self.burst * (math.floor(span / self.burst_window) + 1)
        steady = self.steady * (math.floor(span / self.steady_window) + 1)
        return (burst, "burst") if burst <= steady else (steady, "steady")


# -- processes and databases -------------------------------------------------------------------------------------


@contextlib.contextmanager
def databases(*names: str) -> Iterator[list[str]]:
    """Empty databases on the local server (plain postgresql:// URLs), dropped afterwards."""
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield [ADMIN_URL.rsplit("/", 1)[0] + "/" + name for name in names]
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_queue(name: str) -> None:
    """Remove this run's queue from the shared broker (RabbitMQ keeps a Celery queue when its workers leave)."""
    from kombu import Connection

    from pipelines.distributed import celery_settings

    with contextlib.suppress(Exception), Connection(celery_settings().broker) as conn:
        conn.default_channel.queue_delete(name)


def _say(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- one worker count ------------------------------------------------------------------------------------------


@dataclass
class AccountResult:
    name: str
    expected: int  # the simulator's events
    loaded: int  # the warehouse's rows
    ok: int  # get_events answered 200
    refused: int  # get_events answered 429
    first: float
    last: float

    @property
    def requests(self) -> int:
        return self.ok + self.refused

    @property
    def span(self) -> float:
        return self.last - self.first


@dataclass
class Phase:
    workers: int
    accounts: list[AccountResult]
    wall: float  # the four sync commands, started at once, until the last exited
    first: float
    last: float

    @property
    def span(self) -> float:
        return self.last - self.first

    @property
    def events(self) -> int:
        return sum(a.loaded for a in self.accounts)

    @property
    def requests(self) -> int:
        return sum(a.requests for a in self.accounts)

    @property
    def refused(self) -> int:
        return sum(a.refused for a in self.accounts)


def sim_accounts(events: int):
    from klaviyo_sim import Account

    return {name: Account(seed=SEEDS[name], events=events) for name in NAMES}


def start_simulator(accounts: dict, keys: dict[str, str], *, rate_limits: bool, time_scale: float = 1.0):
    """A simulator over real HTTP serving each account under its key (the tests' way: TCP_NODELAY)."""
    from klaviyo_sim import Account, Simulator

    sim = Simulator(
        Account(seed=7),
        rate_limits=rate_limits,
        time_scale=time_scale,
        accounts={keys[name]: acct for name, acct in accounts.items()},
    )
    sim.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    return sim.start()


def run_phase(workers: int, args: argparse.Namespace, tag: str, scratch: Path) -> Phase:
    import yaml
    from sqlalchemy import create_engine, text

    from resources.accounts import Account as Declared
    from resources.accounts import add_account

    here = scratch / f"w{workers}"
    here.mkdir()
    keys = {name: f"pk_{name}_{tag}_w{workers}_" + "s" * 20 for name in NAMES}
    accounts = sim_accounts(args.events)
    sim = start_simulator(accounts, keys, rate_limits=True, time_scale=args.time_scale)
    declared = here / "accounts.yaml"
    for name in NAMES:
        add_account(declared, Declared(name, f"KLAVIYO_KEY_{name.upper()}"))
    home = here / "dagster_home"
    home.mkdir()
    config = yaml.safe_load((ROOT / "instance" / "dagster.yaml").read_text())
    # The klaviyo_api pool holds every account's entity steps: as the README advises with many accounts, room
    # for each account's (else the pool, not the workers, would cap the steps at once).
    config["concurrency"]["pools"]["default_limit"] = args.pool_limit
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    start = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=BACKFILL_DAYS - 1)).isoformat()
    db_names = (f"kp_bench_scale_{tag}_w{workers}_wh", f"kp_bench_scale_{tag}_w{workers}_dg")
    try:
        with databases(*db_names) as (warehouse_url, dagster_url):
            env = {
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))
            }
            env.update(
                KLAVIYO_PIPELINE_HOME=str(here / "state"),
                KLAVIYO_START_DATE=start,
                KLAVIYO_RATE_STATE_DIR=str(here / "rate"),
                WAREHOUSE_URL=warehouse_url.replace("postgresql://", "postgresql+psycopg://"),
                DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://"),
                DAGSTER_HOME=str(home),
                KLAVIYO_ACCOUNTS_FILE=str(declared),
                **{f"KLAVIYO_KEY_{name.upper()}": keys[name] for name in NAMES},
                KLAVIYO_BASE_URL=sim.url,
                KLAVIYO_RATE_TIME_SCALE=str(args.time_scale),
                KLAVIYO_RATE_REDIS_URL=f"redis://127.0.0.1:6379/{args.redis_db}",
                KLAVIYO_EXECUTOR="celery",
                KLAVIYO_CELERY_QUEUE=f"kp-bench-scale-{tag}-w{workers}",
                PYTHONUNBUFFERED="1",
            )
            migrated = subprocess.run(
                [sys.executable, "-m", "pipelines", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True
            )  # fmt: skip
            if migrated.returncode != 0:
                sys.exit(f"migrate failed:\n{migrated.stdout[-2000:]}{migrated.stderr[-2000:]}")
            # The instance's storage made once, before four processes start runs at once and would each create its
            # tables (the sync command itself makes the API pool's row, safely when several start together).
            prepared = subprocess.run(
                [sys.executable, "-c", PREPARE_INSTANCE], cwd=ROOT, env=env, capture_output=True, text=True
            )  # fmt: skip
            if prepared.returncode != 0:
                sys.exit(f"the Dagster instance could not be prepared:\n{prepared.stderr[-3000:]}")
            logs = {f"bench-w{k + 1}-{tag}": here / f"worker{k + 1}.log" for k in range(workers)}
            argv = [sys.executable, "-m", "pipelines", "worker", "--concurrency", "1", "--name"]
            procs = [start_group([*argv, name], env, log) for name, log in logs.items()]
            syncs: dict[str, subprocess.Popen] = {}
            try:
                deadline = time.monotonic() + 180
                while not all(" ready." in log.read_text() for log in logs.values()):
                    dead = [
                        log for proc, log in zip(procs, logs.values(), strict=True) if proc.poll() is not None
                    ]
                    if dead or time.monotonic() > deadline:
                        sys.exit(
                            f"a worker did not start:\n{(dead or list(logs.values()))[0].read_text()[-3000:]}"
                        )
                    time.sleep(0.5)
                _say(f"{workers} worker(s) ready; starting the 4 backfills")
                began = time.monotonic()
                for name in NAMES:
                    argv = [
                        sys.executable,
                        "-m",
                        "pipelines",
                        "sync",
                        "--account",
                        name,
                        "--entity",
                        "events",
                    ]
                    syncs[name] = start_group([*argv, "--start", start], env, here / f"sync-{name}.log")
                for name, proc in syncs.items():
                    if proc.wait(timeout=args.timeout) != 0:
                        log = (here / f"sync-{name}.log").read_text()
                        sys.exit(f"the sync of {name} failed ({workers} workers):\n{log[-4000:]}")
                wall = time.monotonic() - began
            finally:
                for proc in [*syncs.values(), *procs]:
                    stop_group(proc)
                delete_queue(env["KLAVIYO_CELERY_QUEUE"])
            engine = create_engine(env["WAREHOUSE_URL"])
            try:
                with engine.connect() as conn:
                    rows = dict(
                        conn.execute(text("SELECT account_id, count(*) FROM klaviyo_events GROUP BY 1")).all()
                    )
            finally:
                engine.dispose()
    finally:
        sim.stop()
    calls = sim.calls(OPERATION)
    results = []
    for name, acct in accounts.items():
        mine = [c for c in calls if c.account == acct.account_id]
        at = [c.at for c in mine] or [0.0]
        results.append(
            AccountResult(
                name,
                acct.total_events,
                rows.get(acct.account_id, 0),
                sum(c.status == 200 for c in mine),
                sum(c.status == 429 for c in mine),
                min(at),
                max(at),
            )
        )
    _say(f"{workers} worker(s): synced in {wall:.1f} s")
    return Phase(
        workers, results, wall, min(a.first for a in results), max(a.last for a in results)
    )  # fmt: skip


# -- the baseline ------------------------------------------------------------------------------------------------


def drain(url: str, key: str, pages: int) -> None:
    """Fetch up to `pages` pages of events (page size 1000) with plain requests; print events, seconds."""
    import requests

    session = requests.Session()
    headers = dict(HEADERS, Authorization=f"Klaviyo-API-Key {key}")
    n, got, next_url = 0, 0, f"{url}/api/events?page[size]=1000"
    began = time.perf_counter()
    while next_url and got < pages:
        body = session.get(next_url, headers=headers, timeout=120).json()
        n += len(body["data"])
        got += 1
        next_url = body["links"]["next"]
    print(n, got, time.perf_counter() - began)


def baseline(args: argparse.Namespace) -> tuple[int, int, float]:
    """(events, pages, seconds): each account's first pages fetched by its own process, all at once, from a
    simulator with its limits off (the ceiling of this machine's simulator and HTTP, no pipeline)."""
    keys = {name: f"pk_{name}_baseline_" + "s" * 20 for name in NAMES}
    sim = start_simulator(sim_accounts(args.events), keys, rate_limits=False)
    try:
        argv = [sys.executable, str(Path(__file__).resolve()), _DRAIN, sim.url]
        procs = [
            subprocess.Popen([*argv, keys[name], str(args.baseline_pages)], stdout=subprocess.PIPE, text=True)
            for name in NAMES
        ]
        outs = [proc.communicate()[0].split() for proc in procs]
    finally:
        sim.stop()
    if any(proc.returncode for proc in procs):
        sys.exit("the baseline fetch failed")
    # Each process times its own fetch (not its start-up); they fetch at once, the slowest one ends it.
    return sum(int(o[0]) for o in outs), sum(int(o[1]) for o in outs), max(float(o[2]) for o in outs)


# -- the report --------------------------------------------------------------------------------------------------


def report(
    phases: list[Phase], limits: Limits, args: argparse.Namespace, ceiling: tuple[int, int, float]
) -> bool:
    """Print the tables and what binds; False when a 429 was seen or an account's events differ."""
    n = len(NAMES)
    b_events, b_pages, b_seconds = ceiling
    burst_rate, steady_rate = limits.burst / limits.burst_window, limits.steady / limits.steady_window
    print(
        f"\n{n} accounts x {args.events:,} events (pages of 1000), time scale S = {args.time_scale:g}. Per account, "
        f"get_events allows {limits.burst} requests per {limits.burst_window:g} s (burst) and {limits.steady} "
        f"per {limits.steady_window:g} s (steady): {burst_rate:.2f}/s and {steady_rate:.2f}/s, so over a long "
        f"run the steady window binds ({n * steady_rate:.2f}/s for the {n} accounts)."
    )
    print(
        f"baseline (the machine's ceiling): a bare fetch of {b_pages} pages ({b_events:,} events), one process "
        f"per account at once, limits off, no pipeline: {b_events / b_seconds:,.0f} events/s, "
        f"{b_pages / b_seconds:.2f} requests/s"
    )
    print(
        "\nspan: first to last get_events request; allowed: what both windows admit in the span, 4 accounts "
        "(window: the tighter one);\nsustained: requests/s against the steady rate (4 accounts); efficiency: "
        "throughput gain / worker gain"
    )
    head = (
        f"{'workers':>7} {'wall s':>7} {'span s':>7} {'events':>9} {'events/s':>9} {'req/s':>6} {'429s':>5} "
        f"{'allowed':>8} {'share':>6} {'window':>7} {'sustained':>9} {'vs base':>7} {'efficiency':>12}"
    )
    print(head)
    print("-" * len(head))
    previous: Phase | None = None
    ok = True
    for phase in phases:
        span = max(phase.span, 1e-9)
        allowed = [limits.allowed(span) for _ in phase.accounts]
        total_allowed = sum(a for a, _ in allowed)
        throughput, rate = phase.events / span, phase.requests / span
        eff = "-"
        if previous is not None:
            gain = throughput / (previous.events / max(previous.span, 1e-9))
            eff = f"{gain / (phase.workers / previous.workers):.0%} ({previous.workers}->{phase.workers})"
        print(
            f"{phase.workers:>7} {phase.wall:>7.1f} {phase.span:>7.1f} {phase.events:>9,} {throughput:>9,.0f} "
            f"{rate:>6.2f} {phase.refused:>5} {total_allowed:>8} {phase.requests / total_allowed:>6.1%} "
            f"{'/'.join(sorted({w for _, w in allowed})):>7} {rate / (n * steady_rate):>9.0%} "
            f"{throughput / (b_events / b_seconds):>7.0%} {eff:>12}"
        )
        previous = phase
    print(
        "\nper account (span: its own first to last get_events request; allowed and shares: its own limits)"
    )
    head = (
        f"{'workers':>7} {'account':<9} {'simulated':>9} {'loaded':>9} {'200s':>5} {'429s':>5} {'start s':>7} "
        f"{'span s':>7} {'req/s':>6} {'share':>6} {'sustained':>9}"
    )
    print(head)
    print("-" * len(head))
    for phase in phases:
        for a in phase.accounts:
            own, _ = limits.allowed(a.span)
            rate = a.requests / max(a.span, 1e-9)
            print(
                f"{phase.workers:>7} {a.name:<9} {a.expected:>9,} {a.loaded:>9,} {a.ok:>5} {a.refused:>5} "
                f"{a.first - phase.first:>7.1f} {a.span:>7.1f} {rate:>6.2f} {a.requests / own:>6.1%} "
                f"{rate / steady_rate:>9.0%}"
            )
            if a.loaded != a.expected:
                print(f"  MISMATCH: {a.name}: {a.loaded:,} events in the warehouse, {a.expected:,} simulated")
                ok = False
        ok = ok and not phase.refused

    # What binds: the limits, if an account reached a window's limit; else the machine. And the time scales at
    # which the limits would bind, from this run's rates.
    best = max(phases, key=lambda p: p.requests / max(p.span, 1e-9))
    best_rate = best.requests / max(best.span, 1e-9)
    fastest = max((a.requests / max(a.span, 1e-9), a) for p in phases for a in p.accounts)[0]
    reached = [
        (p.workers, a.name)
        for p in phases
        for a in p.accounts
        if a.requests >= limits.allowed(a.span)[0] * 0.9
    ]
    print("\nwhat binds:")
    if reached:
        print(f"- the API limits: these accounts made 90% or more of what their windows admit: {reached}")
    else:
        print(
            f"- not the API limits: no account made more than {max(a.requests for p in phases for a in p.accounts)} "
            f"requests, within its span's windows ({limits.burst} per burst window, {limits.steady} per steady "
            f"window), and no 429 was needed to hold one back"
        )
        print(
            f"- the machine: the most the pipeline reached was {best_rate:.2f} requests/s with {best.workers} "
            f"worker(s) ({best_rate / (b_pages / b_seconds):.0%} of the bare fetch's {b_pages / b_seconds:.2f}/s), "
            f"{best_rate / (n * steady_rate):.0%} of the {n} accounts' sustained limit"
        )
    summed_scale = n * limits.steady / 60 / best_rate
    print(
        f"- over a long run (many steady windows of {limits.steady} requests), one account alone at its fastest "
        f"here ({fastest:.2f} requests/s) would be held back by its steady limit from S = "
        f"{limits.steady / 60 / fastest:.1f} on, and the {n} accounts together at {best_rate:.2f}/s from "
        f"S = {summed_scale:.1f}; within a shorter run the burst window binds first, and only an account that "
        f"makes more than {limits.burst} requests ({limits.burst * 1000:,} events) at a rate above "
        f"{limits.burst} per burst window, here from S = {limits.burst / fastest:.0f} (one account alone)"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=10.0,
        help="stretch the rate-limit windows of the simulator and the client alike (10: a 1 s window lasts "
        "10 s, so the limits per real second are 1/10 of Klaviyo's)",
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per account")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--baseline-pages", type=int, default=60, help="pages per account in the bare fetch")
    parser.add_argument(
        "--pool-limit", type=int, default=12, help="the klaviyo_api pool's limit in the bench's instance"
    )
    parser.add_argument("--redis-db", type=int, default=11, help="the Redis database of the shared budget")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds a backfill may take")
    args = parser.parse_args()

    limits = Limits.for_events(args.time_scale)
    tag = uuid.uuid4().hex[:8]
    began = time.monotonic()
    _say("baseline: bare fetch, limits off")
    ceiling = baseline(args)
    phases = []
    with tempfile.TemporaryDirectory(prefix="bench_scale_") as scratch:
        for workers in (int(w) for w in args.workers.split(",")):
            _say(f"{workers} worker(s)")
            phases.append(run_phase(workers, args, tag, Path(scratch)))
    ok = report(phases, limits, args, ceiling)
    print(f"\nbench took {time.monotonic() - began:.0f} s")
    sys.exit(0 if ok else 1)


if __name__ == "__main__" and sys.argv[1:2] == [_DRAIN]:
    drain(sys.argv[2], sys.argv[3], int(sys.argv[4]))
elif __name__ == "__main__":
    main()
