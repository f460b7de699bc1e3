"""Several Klaviyo accounts in one deployment (KLAVIYO_ACCOUNTS_FILE): the accounts file and its commands, the
`account` partition dimension, one run per account, a revoked key failing its account only, and the sensors
and schedules asking per account. Each account is a simulated account of its own (own data and time zone)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from klaviyo_sim import Account
from resources.accounts import Account as Declared
from resources.accounts import AccountsError, add_account, read_accounts
from tests.conftest import cli_env

ROOT = Path(__file__).resolve().parents[1]
KEYS = {name: f"pk_{name}_" + "k" * 30 for name in ("acme", "globex", "initech")}
SIM_ACCOUNTS = {
    "acme": dict(seed=21, timezone="UTC"),
    "globex": dict(seed=22, timezone="America/New_York"),
    "initech": dict(seed=23, timezone="Asia/Kolkata"),
}
TABLES = ("klaviyo_campaigns", "klaviyo_flows", "klaviyo_lists", "klaviyo_events")


def _cli(env: dict, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def three_accounts(tmp_path, make_sim, new_database):
    """A simulator serving three accounts (one per key), an accounts file declaring them, and a CLI
    environment over two empty databases (the warehouse and the Dagster instance)."""
    accounts = {name: Account(**kw) for name, kw in SIM_ACCOUNTS.items()}
    sim = make_sim(Account(seed=7), accounts={KEYS[n]: a for n, a in accounts.items()})
    path = tmp_path / "accounts.yaml"
    for name in accounts:
        add_account(path, Declared(name, f"KLAVIYO_KEY_{name.upper()}"))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "instance" / "dagster.yaml").read_text())
    warehouse_url, dagster_url = new_database(), new_database()
    env = cli_env(
        tmp_path,
        WAREHOUSE_URL=warehouse_url.replace("postgresql://", "postgresql+psycopg://"),
        DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://"),
        DAGSTER_HOME=str(home),
        KLAVIYO_ACCOUNTS_FILE=str(path),
        KLAVIYO_BASE_URL=sim.url,
        KLAVIYO_RATE_TIME_SCALE="0.01",
        **{f"KLAVIYO_KEY_{n.upper()}": KEYS[n] for n in accounts},
    )
    return sim, accounts, env


def _pairs(url: str) -> dict[str, set[tuple[str, str]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: {(r[0], r[1]) for r in conn.execute(text(f"SELECT account_id, id FROM {t}"))}
                for t in TABLES
            }
    finally:
        engine.dispose()


def _expected(account: Account, start: dt.date | None = None) -> dict[str, set[tuple[str, str]]]:
    aid = account.account_id
    return {
        "klaviyo_campaigns": {(aid, c.id) for c in account.campaigns},
        "klaviyo_flows": {(aid, f.id) for f in account.flows},
        "klaviyo_lists": {(aid, x.id) for x in account.lists},
        "klaviyo_events": {(aid, account.event_id(i)) for i in range(account.total_events)},
    }


# -- the accounts file ----------------------------------------------------------------------------------------


def test_accounts_file_declares_names_and_key_variables_never_keys(tmp_path, monkeypatch):
    path = tmp_path / "accounts.yaml"
    env = cli_env(tmp_path, KLAVIYO_ACCOUNTS_FILE=str(path), KLAVIYO_KEY_ACME="pk_secret_value_1234567890")
    added = _cli(env, "accounts", "add", "acme", "--key-env", "KLAVIYO_KEY_ACME")
    assert added.returncode == 0, added.stderr
    added = _cli(
        env,
        "accounts",
        "add",
        "globex",
        "--key-env",
        "KLAVIYO_KEY_GLOBEX",
        "--start-date",
        env["KLAVIYO_START_DATE"],
    )
    assert added.returncode == 0, added.stderr
    text_ = path.read_text()
    assert "pk_secret_value" not in text_
    assert yaml.safe_load(text_) == {
        "accounts": [
            {"name": "acme", "key_env": "KLAVIYO_KEY_ACME"},
            {"name": "globex", "key_env": "KLAVIYO_KEY_GLOBEX", "start_date": env["KLAVIYO_START_DATE"]},
        ]
    }
    listed = _cli(env, "accounts", "list")
    assert listed.returncode == 0
    lines = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[2:]}
    assert lines["acme"][1:3] == ["KLAVIYO_KEY_ACME", "set"]
    assert lines["globex"][1:4] == ["KLAVIYO_KEY_GLOBEX", "NOT", "SET"]
    assert "pk_secret_value" not in listed.stdout + listed.stderr
    # Re-adding an account changes it in place; bad names, variables and dates are refused in one line.
    assert _cli(env, "accounts", "add", "acme", "--key-env", "OTHER_VAR").returncode == 0
    assert [a.key_env for a in read_accounts(path)] == ["OTHER_VAR", "KLAVIYO_KEY_GLOBEX"]
    for argv, said in (
        (("Acme|x", "--key-env", "K"), "account name"),
        (("acme", "--key-env", "pk_live_123"), "not an environment variable"),
        (("acme", "--key-env", "K", "--start-date", "2026-13-01"), "not a date"),
    ):
        refused = _cli(env, "accounts", "add", *argv)
        assert refused.returncode == 2 and said in refused.stderr, refused.stderr
    monkeypatch.setenv("KLAVIYO_ACCOUNTS_FILE", str(path))
    with pytest.raises(AccountsError, match="KLAVIYO_KEY_GLOBEX is not set"):
        read_accounts(path)[1].api_key()
    path.write_text("accounts:\n  - {name: a}\n  - {name: a}\n")
    with pytest.raises(AccountsError, match="twice"):
        read_accounts(path)


# -- one run per account ----------------------------------------------------------------------------------------


@pytest.mark.long
def test_three_accounts_sync_each_into_its_own_rows_and_status(three_accounts):
    sim, accounts, env = three_accounts
    entities = ("--entity", "campaigns", "--entity", "flows", "--entity", "lists", "--entity", "events")
    synced = _cli(env, "sync", *entities)
    assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    for name in accounts:
        assert f"account {name}: run " in synced.stdout and "succeeded" in synced.stdout
    found = _pairs(env["WAREHOUSE_URL"])
    for table in TABLES:
        expected = set().union(*(_expected(a)[table] for a in accounts.values()))
        assert found[table] == expected, table  # every account's rows, none under another account's id
    engine = create_engine(env["WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            status = {
                (r.account_id, r.entity): r.status
                for r in conn.execute(text("SELECT account_id, entity, status FROM klaviyo_sync_status"))
            }
            recorded = {
                tuple(r)
                for r in conn.execute(text("SELECT account_id, name, timezone FROM klaviyo_accounts"))
            }
    finally:
        engine.dispose()
    for account in accounts.values():
        for entity in ("campaigns", "flows", "lists", "events"):
            assert status[(account.account_id, entity)] == "success"
    # Each account recorded with its declared name and its own time zone.
    assert recorded == {(a.account_id, name, SIM_ACCOUNTS[name]["timezone"]) for name, a in accounts.items()}
    # The runs are filed per account: the partitions of the `account` dimension, and the run tag.
    script = (
        "import dagster as dg, json; i = dg.DagsterInstance.get(); "
        "runs = i.get_runs(dg.RunsFilter(tags={'klaviyo/trigger': 'cli'})); "
        "print(json.dumps({'parts': i.get_dynamic_partitions('klaviyo_accounts'), "
        "'tags': sorted(r.tags.get('klaviyo/account', '') for r in runs)}))"
    )
    shown = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    seen = json.loads(shown.stdout.strip().splitlines()[-1])
    assert seen["parts"] == list(accounts)
    assert seen["tags"] == sorted([*accounts, ",".join(accounts)])  # a run each, and the checks' run


@pytest.mark.long
def test_a_key_revoked_mid_run_fails_its_account_and_the_others_finish(three_accounts):
    sim, accounts, env = three_accounts
    victim = accounts["globex"]
    stop = threading.Event()

    def revoke_once_its_run_reads() -> None:
        # Mid-run: once the account's run has read past its first listings (its key check came before).
        while not stop.is_set():
            reads = [
                r for r in sim.calls() if r.account == victim.account_id and r.operation != "get_accounts"
            ]
            if len(reads) >= 3:
                sim.revoke_key(KEYS["globex"])
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=revoke_once_its_run_reads, daemon=True)
    watcher.start()
    try:
        synced = _cli(env, "sync", "--entity", "campaigns", "--entity", "flows", "--entity", "events")
    finally:
        stop.set()
        watcher.join()
    assert synced.returncode == 1, synced.stdout[-3000:]
    assert "account globex: run " in synced.stdout
    runs = {
        line.split(":")[0]: line
        for line in synced.stdout.splitlines()
        if line.startswith("account ") and " run " in line
    }
    assert "FAILED" in runs["account globex"] and "succeeded" in runs["account acme"]
    assert "succeeded" in runs["account initech"]  # the account after the failed one still ran
    assert "401" in synced.stderr and "key" in synced.stderr.lower()  # a clear error, from Klaviyo's answer
    assert KEYS["globex"] not in synced.stdout + synced.stderr  # and never the key
    found = _pairs(env["WAREHOUSE_URL"])
    for name in ("acme", "initech"):
        expected = _expected(accounts[name])
        for table in ("klaviyo_campaigns", "klaviyo_flows", "klaviyo_events"):
            assert {p for p in found[table] if p[0] == accounts[name].account_id} == expected[table], (
                name,
                table,
            )
    engine = create_engine(env["WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            failed = conn.execute(
                text("SELECT count(*) FROM klaviyo_sync_status WHERE account_id = :a AND status = 'failed'"),
                {"a": victim.account_id},
            ).scalar_one()
            others = conn.execute(
                text(
                    "SELECT count(*) FROM klaviyo_sync_status WHERE account_id <> :a AND status <> 'success'"
                ),
                {"a": victim.account_id},
            ).scalar_one()
    finally:
        engine.dispose()
    assert failed >= 1 and others == 0


# -- sensors and schedules per account --------------------------------------------------------------------------

SENSOR_SCRIPT = """
import json, datetime as dt, dagster as dg
from pipelines.definitions import defs
from pipelines.sensors import klaviyo_bootstrap_sensor
from pipelines.schedules import klaviyo_incremental_schedule
i = dg.DagsterInstance.get()
resources = {"klaviyo": defs.resources["klaviyo"], "warehouse": defs.resources["warehouse"]}
out = {}
with dg.build_sensor_context(instance=i, resources=resources) as ctx:
    result = klaviyo_bootstrap_sensor(ctx)
out["added"] = [list(r.partition_keys) for r in result.dynamic_partitions_requests]
out["runs"] = sorted((r.job_name, r.tags.get("klaviyo/account"), r.tags.get("dagster/asset_partition_range_start"))
                     for r in result.run_requests)
for r in result.dynamic_partitions_requests:
    i.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
with dg.build_schedule_context(instance=i, scheduled_execution_time=dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)) as ctx:
    requests = klaviyo_incremental_schedule(ctx)
out["scheduled"] = sorted((r.partition_key, r.tags.get("klaviyo/account")) for r in requests)
print(json.dumps(out))
"""


def test_new_accounts_get_their_partition_and_history_from_the_bootstrap_sensor(three_accounts):
    sim, accounts, env = three_accounts
    evaluated = subprocess.run(  # the code location migrates the warehouse when it loads
        [sys.executable, "-c", SENSOR_SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    out = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert out["added"] == [list(accounts)]
    runs = out["runs"]
    # Every entity job, once per account, over the account's whole history (its own start date if it has one).
    assert {r[1] for r in runs} == set(accounts)
    assert ["klaviyo_sync_flows", "globex", f"globex|{env['KLAVIYO_START_DATE']}"] in runs
    assert len(runs) == 3 * len({r[0] for r in runs})
    assert out["scheduled"] == [[f"{n}|2026-11-30", n] for n in sorted(accounts)]
