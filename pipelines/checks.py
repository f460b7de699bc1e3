"""Asset checks on the entity tables: unique keys, required columns, every reported record loaded."""

import dagster as dg
from sqlalchemy import text

from assets.entities import ALL_ASSETS, SNAPSHOTS
from resources.warehouse import Warehouse

REQUIRED = {
    "profiles": ("id", "account_id", "updated_date", "properties"),
    "events": ("id", "account_id", "datetime", "metric_id", "event_properties"),
}
SOFT_DELETES = {"events": False}


def _checks_for(entity: str) -> list[dg.AssetChecksDefinition]:
    table = f"klaviyo_{entity}"
    key = dg.AssetKey(["klaviyo", entity])
    required = REQUIRED.get(
        entity, ("id", "account_id", "metadata") + (() if entity in SNAPSHOTS else ("updated_date",))
    )
    live = " AND deleted_at IS NULL" if SOFT_DELETES.get(entity, True) else ""

    @dg.asset_check(
        asset=key, name="unique_keys", description=f"No (account_id, id) appears twice in {table}."
    )
    def unique_keys(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            dupes = conn.execute(
                text(f"SELECT count(*) - count(DISTINCT (account_id, id)) FROM {table}")
            ).scalar_one()
        return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicates": dupes})

    @dg.asset_check(
        asset=key, name="required_columns", description=f"{', '.join(required)} are never null in {table}."
    )
    def required_columns(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        counts = {}
        with warehouse.engine.connect() as conn:
            for col in required:
                counts[col] = conn.execute(
                    text(f"SELECT count(*) FROM {table} WHERE {col} IS NULL{live}")
                ).scalar_one()
        return dg.AssetCheckResult(
            passed=not any(counts.values()), metadata={f"null_{k}": v for k, v in counts.items()}
        )

    @dg.asset_check(
        asset=key,
        name="loaded_what_the_api_reported",
        description="The latest run loaded every record the API returned for its window (none rejected).",
    )
    def loaded_what_the_api_reported(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            row = conn.execute(
                text(
                    """SELECT records_read, records_rejected, rows_inserted + rows_updated + rows_skipped AS landed,
                              window_start, window_end, status
                       FROM klaviyo_sync_runs WHERE entity = :e ORDER BY finished_at DESC, id DESC LIMIT 1"""
                ),
                {"e": entity},
            ).one_or_none()
        if row is None:
            return dg.AssetCheckResult(passed=False, metadata={"reason": "no sync run recorded yet"})
        passed = row.status == "success" and row.records_rejected == 0 and row.landed == row.records_read
        return dg.AssetCheckResult(
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "records_read": row.records_read,
                "records_rejected": row.records_rejected,
                "rows_landed": row.landed,
                "window": f"{row.window_start} .. {row.window_end}",
            },
        )

    return [unique_keys, required_columns, loaded_what_the_api_reported]


entity_checks = [check for entity in ALL_ASSETS for check in _checks_for(entity)]
