"""Deletion reconciliation: Klaviyo's API never reports a deletion, so an asset lists every id of the small
entities and soft-deletes the rows Klaviyo no longer has."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from assets.transform import INCLUDED_SHAPES
from resources import settings
from resources.catalogue import CATALOGUE, SMALL_ENTITIES
from resources.klaviyo import KlaviyoApiError, KlaviyoClient, KlaviyoResource
from resources.warehouse import Warehouse
from resources.warehouse import queries as q

UTC = dt.UTC


@dataclass
class Reconciled:
    """What a deletion reconciliation found for one entity."""

    entity: str
    listed: int
    marked_deleted: list[str]


class ReconcileRefused(RuntimeError):
    """A listing would mark too many rows deleted at once (more likely a short listing than a mass deletion)."""


def reconcile_deletions(
    entity: str,
    client: KlaviyoClient,
    warehouse: Warehouse,
    max_deleted_share: float = 0.5,
) -> Reconciled:
    """Klaviyo's API never reports deletions: list every id of the entity and mark the live rows it no longer
    lists with `deleted_at` (never a hard delete; a later sync that sees the record again revives it).

    Only rows last synced before the listing began are candidates, so a record created meanwhile and loaded
    by a concurrent sync is not mistaken for a deleted one. Nothing is marked if the listing fails, or if it
    would mark more than `max_deleted_share` of the live rows."""
    plan = CATALOGUE[entity]
    account_id = client.account_id()
    began = dt.datetime.now(UTC)
    ids = [
        r["id"]
        for page in client.list_window(entity)
        for r in page.records
        if isinstance(r, dict) and "id" in r
    ]
    with warehouse.transaction() as conn:
        live = q.live_rows(conn, plan.table, account_id)
        gone = q.mark_unlisted_deleted(conn, plan.table, account_id, ids, began)
        if gone and len(gone) > max_deleted_share * live:
            raise ReconcileRefused(
                f"klaviyo/{entity}: the listing ({len(ids)} ids) would mark {len(gone)} of {live} live rows "
                f"deleted (over {max_deleted_share:.0%}); nothing was marked"
            )
        for resource_type in plan.included_tables:  # e.g. a deleted campaign's messages
            shape = INCLUDED_SHAPES[resource_type]
            q.mark_owned_deleted(conn, shape.table, shape.owner_column, account_id, gone)
    return Reconciled(entity, len(ids), sorted(gone))


class ReconcileConfig(dg.Config):
    """Run configuration of the deletion reconciliation."""

    entities: list[str] = Field(
        default_factory=lambda: list(SMALL_ENTITIES), description="Entities to reconcile."
    )
    max_deleted_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Refuse to mark more than this share of an entity's live rows deleted in one run.",
    )


@dg.asset(
    name="deletions",
    key_prefix=["klaviyo"],
    group_name="klaviyo_maintenance",
    kinds={"python", "postgres"},
    owners=settings.asset_owners(),
    deps=[dg.AssetKey(["klaviyo", e]) for e in SMALL_ENTITIES],
    pool="klaviyo_api",
    description="Marks rows of campaigns, flows, forms, segments, lists, metrics and tags that Klaviyo no longer "
    "lists with deleted_at (one full id listing per entity; profiles and events are not reconciled).",
)
def deletions(
    context: dg.AssetExecutionContext, config: ReconcileConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    warehouse.require_migrated()
    unknown = sorted(set(config.entities) - set(SMALL_ENTITIES))
    if unknown:
        raise dg.Failure(f"cannot reconcile {unknown}: only {list(SMALL_ENTITIES)}", allow_retries=False)
    client = klaviyo.fresh_client()
    found = {}
    try:
        for entity in config.entities:
            result = reconcile_deletions(entity, client, warehouse, config.max_deleted_share)
            found[entity] = result
            context.log.info(
                f"klaviyo/{entity}: {result.listed} ids listed, {len(result.marked_deleted)} rows marked deleted"
            )
    except (KlaviyoApiError, ReconcileRefused) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    finally:
        client.close()
    return dg.MaterializeResult(
        metadata={
            **{f"deleted_{e}": len(r.marked_deleted) for e, r in found.items()},
            **{f"listed_{e}": r.listed for e, r in found.items()},
            "deleted_ids": dg.MetadataValue.json({e: r.marked_deleted[:50] for e, r in found.items()}),
            "api_calls": client.stats.totals().calls,
        }
    )
