"""Jobs: every entity at once, and one per entity (the seed's "sync this entity now"; a parent's job also runs
the entities nested under it: flows' messages, forms' versions)."""

from __future__ import annotations

import dagster as dg

from resources.catalogue import ALL_ENTITIES, nested_under

all_entities_job = dg.define_asset_job(
    "klaviyo_sync_all",
    selection=dg.AssetSelection.groups("klaviyo_extract", "klaviyo_volume"),
    description="Sync every Klaviyo entity, profiles and events for the chosen partition (or range).",
    tags={"klaviyo/job": "all"},
)

entity_jobs = {
    entity: dg.define_asset_job(
        f"klaviyo_sync_{entity}",
        selection=dg.AssetSelection.assets(
            *(dg.AssetKey(["klaviyo", e]) for e in (entity, *nested_under(entity)))
        ),
        description=f"Sync Klaviyo {entity} now.",
        tags={"klaviyo/job": entity},
    )
    for entity in ALL_ENTITIES
}

stats_job = dg.define_asset_job(
    "klaviyo_sync_stats",
    selection=dg.AssetSelection.groups("klaviyo_stats", "klaviyo_analytics"),
    description="Report statistics (flows, forms, segments by day; campaigns) and the summary columns, for "
    "the chosen partition or range, within the Reporting API's daily quota.",
    tags={"klaviyo/job": "stats"},
)

full_sync_job = dg.define_asset_job(
    "klaviyo_full_sync",
    selection=dg.AssetSelection.groups(
        "klaviyo_extract", "klaviyo_volume", "klaviyo_stats", "klaviyo_analytics"
    ),
    description="Everything: entities, profiles, events, report statistics and summary columns (the CLI's sync).",
    tags={"klaviyo/job": "full"},
)

reconcile_job = dg.define_asset_job(
    "klaviyo_reconcile_deletions",
    selection=dg.AssetSelection.assets(dg.AssetKey(["klaviyo", "deletions"])),
    description="Mark rows Klaviyo no longer lists as deleted (deleted_at), for the small entities.",
    tags={"klaviyo/job": "reconcile"},
)
