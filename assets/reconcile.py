"""Deletion reconciliation: Klaviyo's API never reports a deletion, so an asset lists every id of the small
entities and soft-deletes the rows Klaviyo no longer has."""

import dagster as dg
from pydantic import Field

from assets.entities import ENTITIES
from assets.sync import ReconcileRefused, reconcile_deletions
from resources.klaviyo import KlaviyoApiError, KlaviyoResource
from resources.warehouse import Warehouse


class ReconcileConfig(dg.Config):
    """Run configuration of the deletion reconciliation."""

    entities: list[str] = Field(default_factory=lambda: list(ENTITIES), description="Entities to reconcile.")
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
    deps=[dg.AssetKey(["klaviyo", e]) for e in ENTITIES],
    pool="klaviyo_api",
    description="Marks rows of campaigns, flows, forms, segments, lists, metrics and tags that Klaviyo no longer "
    "lists with deleted_at (one full id listing per entity; profiles and events are not reconciled).",
)
def deletions(
    context: dg.AssetExecutionContext, config: ReconcileConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    warehouse.ensure_migrated()
    unknown = sorted(set(config.entities) - set(ENTITIES))
    if unknown:
        raise dg.Failure(f"cannot reconcile {unknown}: only {list(ENTITIES)}", allow_retries=False)
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
