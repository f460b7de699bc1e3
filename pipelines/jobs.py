"""Jobs: every entity at once, and one per entity (the seed's "sync this entity now")."""

from __future__ import annotations

import dagster as dg

from assets.entities import ALL_ASSETS

all_entities_job = dg.define_asset_job(
    "klaviyo_sync_all",
    selection=dg.AssetSelection.groups("klaviyo_extract", "klaviyo_volume"),
    description="Sync every Klaviyo entity, profiles and events for the chosen partition (or range).",
    tags={"klaviyo/job": "all"},
)

entity_jobs = {
    entity: dg.define_asset_job(
        f"klaviyo_sync_{entity}",
        selection=dg.AssetSelection.assets(dg.AssetKey(["klaviyo", entity])),
        description=f"Sync Klaviyo {entity} now.",
        tags={"klaviyo/job": entity},
    )
    for entity in ALL_ASSETS
}
