"""Deletion reconciliation: simulator over HTTP, real Postgres, a real Dagster run."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy import text

from assets.reconcile import ReconcileRefused, deletions, reconcile_deletions
from assets.sync import SyncRequest, sync_entity
from resources.klaviyo import KlaviyoResource
from resources.warehouse import Repository
from tests.conftest import TEST_KEY


def live_ids(warehouse, entity: str) -> set[str]:
    with warehouse.engine.connect() as conn:
        return set(
            conn.execute(text(f"SELECT id FROM klaviyo_{entity} WHERE deleted_at IS NULL")).scalars().all()
        )


def load(sim, warehouse, client, *entities):
    for entity in entities:
        sync_entity(SyncRequest(entity, None, None, full_refresh=True), client, warehouse)


def test_rows_klaviyo_no_longer_lists_are_soft_deleted_and_come_back(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    load(sim, warehouse, client, "flows", "campaigns", "tags")
    flows_before = live_ids(warehouse, "flows")
    gone_flows = set(sim.account.delete("flow", 2))
    gone_campaigns = set(sim.account.delete("campaign", 3))  # across channel and archived passes
    gone_tags = set(sim.account.delete("tag", 1))

    results = {e: reconcile_deletions(e, client, warehouse) for e in ("flows", "campaigns", "tags")}
    assert set(results["flows"].marked_deleted) == gone_flows
    assert set(results["campaigns"].marked_deleted) == gone_campaigns
    assert set(results["tags"].marked_deleted) == gone_tags
    assert live_ids(warehouse, "flows") == flows_before - gone_flows
    repo = Repository(warehouse, "klaviyo_flows", sim.account.account_id)
    gone = next(iter(gone_flows))
    assert repo.find_by_id(gone) is None and repo.find_by_id(gone, include_deleted=True)["deleted_at"]
    # Nothing more on a second pass.
    assert reconcile_deletions("flows", client, warehouse).marked_deleted == []


def test_a_listing_that_would_delete_most_rows_is_refused(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    load(sim, warehouse, client, "forms")
    before = live_ids(warehouse, "forms")
    sim.account.delete("form", len(sim.account.forms) - 2)
    with pytest.raises(ReconcileRefused, match="nothing was marked"):
        reconcile_deletions("forms", client, warehouse, max_deleted_share=0.5)
    assert live_ids(warehouse, "forms") == before


def test_rows_synced_after_the_listing_began_are_left_alone(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    load(sim, warehouse, client, "segments")
    with warehouse.engine.begin() as conn:  # a row a concurrent sync just wrote, unknown to the listing
        conn.execute(
            text(
                """INSERT INTO klaviyo_segments (id, account_id, metadata, last_synced_at)
                   VALUES ('NEWSEG', :a, '{}', now() + interval '1 minute')"""
            ),
            {"a": sim.account.account_id},
        )
    assert reconcile_deletions("segments", client, warehouse).marked_deleted == []


def test_the_dagster_asset_reports_what_it_marked(sim, warehouse, client_for):
    client = client_for(sim, rate_time_scale=0.01)
    load(sim, warehouse, client, "lists", "metrics")
    sim.account.delete("list", 1)
    result = dg.materialize(
        [deletions],
        resources={
            "klaviyo": KlaviyoResource(api_key=TEST_KEY, base_url=sim.url, rate_time_scale=0.01),
            "warehouse": warehouse,
        },
        run_config={"ops": {"klaviyo__deletions": {"config": {"entities": ["lists", "metrics"]}}}},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    meta = result.asset_materializations_for_node("klaviyo__deletions")[0].metadata
    assert meta["deleted_lists"].value == 1 and meta["deleted_metrics"].value == 0
