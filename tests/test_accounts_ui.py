"""Several Klaviyo accounts from Dagster's UI: a backfill of two accounts × three days, launched as the UI's
backfill dialog launches it (GraphQL `launchPartitionBackfill`) on a running `klaviyo-pipeline ui`, makes one run
per account, each over its own account's range, and loads each account's own data."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import create_engine, text

from klaviyo_sim import Account
from resources.accounts import Account as Declared
from resources.accounts import add_account
from tests.conftest import ui_env

ADD_PARTITION = """mutation($name: String!, $key: String!) { addDynamicPartition(
    repositorySelector: {repositoryLocationName: "klaviyo_pipeline", repositoryName: "__repository__"},
    partitionsDefName: $name, partitionKey: $key) { __typename ... on PythonError { message } } }"""
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RUN_TAGS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { tags { key value } } } }"""


@pytest.mark.long
def test_a_backfill_of_two_accounts_from_the_ui_runs_once_per_account(tmp_path, new_database):
    from tests.dagster_ui import running_ui

    path = tmp_path / "accounts.yaml"
    names = ("acme", "globex")
    for name in names:
        add_account(path, Declared(name, f"KLAVIYO_KEY_{name.upper()}"))  # keys unset: simulated accounts
    env = ui_env(tmp_path, new_database, KLAVIYO_ACCOUNTS_FILE=str(path))
    # The simulated account of each (prepared(): seed 7 + its place in the file), and 3 days of the partitions
    # (neither the first, which also takes everything older, nor today's).
    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=k) for k in (4, 3, 2)]
    simulated = {name: Account(seed=7 + i, scale="small") for i, name in enumerate(names)}
    expected = {
        simulated[n].account_id: {
            f.id
            for f in simulated[n].flows
            if days[0]
            <= dt.datetime.fromisoformat(f.attributes["updated"]).astimezone(dt.UTC).date()
            <= days[-1]
        }
        for n in names
    }
    assert all(expected.values()), "a simulated account has no flow updated in those days"
    with running_ui(env, tmp_path / "ui.log") as ui:
        for name in names:
            added = ui.graphql(ADD_PARTITION, name="klaviyo_accounts", key=name)["addDynamicPartition"]
            assert added["__typename"] == "AddDynamicPartitionSuccess", added
        keys = [f"{n}|{d}" for n in names for d in days]
        params = {"assetSelection": [{"path": ["klaviyo", "flows"]}], "partitionNames": keys}
        launched = ui.graphql(LAUNCH, params=params)["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = ui.wait_for_backfill_runs(launched["backfillId"], timeout=240)
        assert backfill["numPartitions"] == 6
        # One run per account (each account's days are one range: the single-run backfill policy).
        assert [r["status"] for r in backfill["runs"]] == ["SUCCESS", "SUCCESS"], backfill
        ranges = set()
        for r in backfill["runs"]:
            tags = {t["key"]: t["value"] for t in ui.graphql(RUN_TAGS, id=r["id"])["runOrError"]["tags"]}
            ranges.add(
                (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
            )
    assert ranges == {(f"{n}|{days[0]}", f"{n}|{days[-1]}") for n in names}
    engine = create_engine(env["WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            loaded = conn.execute(
                text("SELECT account_id, id FROM klaviyo_flows WHERE deleted_at IS NULL")
            ).all()
    finally:
        engine.dispose()
    found: dict[str, set[str]] = {}
    for account_id, flow_id in loaded:
        found.setdefault(account_id, set()).add(flow_id)
    assert found == expected
