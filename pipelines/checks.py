"""Asset checks: entity tables (unique keys, required columns, every reported record loaded) and statistics
(rates in [0, 1], counts non-negative, known entities, no missing day)."""

import dagster as dg
from sqlalchemy import text

from assets.entities import ALL_ASSETS, SNAPSHOTS
from assets.stats import STATS_KEYS
from resources.reports import FAMILIES
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


# -- statistics -------------------------------------------------------------------------------------------
ENTITY_OF = {
    "flow": "klaviyo_flows",
    "form": "klaviyo_forms",
    "segment": "klaviyo_segments",
    "campaign": "klaviyo_campaigns",
}


def _rows_where(warehouse: Warehouse, table: str, condition: str) -> int:
    warehouse.ensure_migrated()
    with warehouse.engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table} WHERE {condition}")).scalar_one()


def _stats_checks_for(name: str) -> list[dg.AssetChecksDefinition]:
    family = FAMILIES[name]
    table, key = family.table, STATS_KEYS[name]
    rates = [c for c in family.figures if c.endswith("_rate")]
    counts = [c for c in family.counts if c != "net_members_changed"]
    id_column = f"{name}_id"

    @dg.asset_check(asset=key, name="rates_within_0_1", description=f"Every rate in {table} is in [0, 1].")
    def rates_within_0_1(warehouse: Warehouse) -> dg.AssetCheckResult:
        if not rates:
            return dg.AssetCheckResult(passed=True, metadata={"rates": "none in this report"})
        bad = _rows_where(warehouse, table, " OR ".join(f"{c} < 0 OR {c} > 1" for c in rates))
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_out_of_range": bad})

    @dg.asset_check(asset=key, name="counts_non_negative", description=f"No count in {table} is negative.")
    def counts_non_negative(warehouse: Warehouse) -> dg.AssetCheckResult:
        bad = _rows_where(warehouse, table, " OR ".join(f"{c} < 0" for c in counts))
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_with_negative_counts": bad})

    @dg.asset_check(
        asset=key,
        name="known_entities",
        description=f"Every row of {table} refers to a {name} in {ENTITY_OF[name]}.",
    )
    def known_entities(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            orphans = (
                conn.execute(
                    text(
                        f"""SELECT DISTINCT s.{id_column} FROM {table} s WHERE NOT EXISTS (
                          SELECT 1 FROM {ENTITY_OF[name]} e WHERE e.account_id = s.account_id AND e.id = s.{id_column})
                        ORDER BY 1 LIMIT 20"""
                    )
                )
                .scalars()
                .all()
            )
        return dg.AssetCheckResult(
            passed=not orphans,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unknown_ids": dg.MetadataValue.json(orphans)},
        )

    @dg.asset_check(
        asset=key,
        name="no_missing_days",
        description=f"No day is missing between the first and last day {name} statistics were loaded for.",
    )
    def no_missing_days(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            rows = conn.execute(
                text(
                    """SELECT account_id, min(day) AS first, max(day) AS last, count(*) AS days,
                              (max(day) - min(day) + 1) - count(*) AS missing
                       FROM klaviyo_report_coverage WHERE family = :f GROUP BY account_id"""
                ),
                {"f": name},
            ).all()
        missing = sum(r.missing for r in rows)
        return dg.AssetCheckResult(
            passed=missing == 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_days": missing,
                "loaded_range": ", ".join(f"{r.first}..{r.last}" for r in rows) or "nothing loaded",
            },
        )

    @dg.asset_check(
        asset=key,
        name="sent_campaigns_have_figures",
        description="Every campaign sent (status Sent) at least a day before the latest campaign report call "
        "and since the first one has a row in klaviyo_campaign_stats.",
    )
    def sent_campaigns_have_figures(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            missing = (
                conn.execute(
                    text(
                        """WITH calls AS (
                               SELECT account_id, min(timeframe_start) AS first, max(called_at) AS last
                               FROM klaviyo_report_calls WHERE report = :r AND status = 'ok' GROUP BY account_id)
                           SELECT c.id FROM klaviyo_campaigns c JOIN calls ON calls.account_id = c.account_id
                           WHERE c.deleted_at IS NULL AND c.status = 'Sent'
                             AND c.send_time >= calls.first AND c.send_time < calls.last - interval '1 day'
                             AND NOT EXISTS (SELECT 1 FROM klaviyo_campaign_stats s
                                             WHERE s.account_id = c.account_id AND s.campaign_id = c.id)
                           ORDER BY c.id LIMIT 20"""
                    ),
                    {"r": family.report},
                )
                .scalars()
                .all()
            )
        return dg.AssetCheckResult(
            passed=not missing,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"campaigns_without_figures": dg.MetadataValue.json(missing)},
        )

    @dg.asset_check(
        asset=key,
        name="no_rejected_results",
        description=f"The latest run's {family.report} responses had no result that could not be read.",
    )
    def no_rejected_results(warehouse: Warehouse) -> dg.AssetCheckResult:
        warehouse.ensure_migrated()
        with warehouse.engine.connect() as conn:
            row = conn.execute(
                text(
                    """WITH latest AS (SELECT run_id FROM klaviyo_report_calls WHERE report = :r
                                      ORDER BY called_at DESC, id DESC LIMIT 1)
                       SELECT coalesce(sum(rows_rejected), 0) AS rejected, count(*) AS calls,
                              string_agg(detail, '; ') FILTER (WHERE rows_rejected > 0) AS detail
                       FROM klaviyo_report_calls WHERE report = :r
                         AND run_id IS NOT DISTINCT FROM (SELECT run_id FROM latest)"""
                ),
                {"r": family.report},
            ).one()
        return dg.AssetCheckResult(
            passed=row.rejected == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"results_rejected": int(row.rejected), "calls": row.calls, "detail": row.detail or ""},
        )

    coverage = sent_campaigns_have_figures if name == "campaign" else no_missing_days
    return [rates_within_0_1, counts_non_negative, known_entities, coverage, no_rejected_results]


stats_checks = [check for name in STATS_KEYS for check in _stats_checks_for(name)]
