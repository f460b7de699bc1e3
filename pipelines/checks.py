"""Asset checks that can fail: what the primary keys and NOT NULL constraints do not already guarantee.

Entities (from the catalogue): ids unique where the key has more columns, nullable columns a row must have,
every reported record loaded, referenced rows present, no update time in the future, a watermark that never
moves back. Statistics: rates in [0, 1], counts non-negative, known entities, no missing day (campaigns: every
sent campaign has figures), no rejected result. The SQL lives in the warehouse layer (resources/warehouse)."""

import datetime as dt

import dagster as dg

from assets.stats import STATS_KEYS
from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES
from resources.catalogue import CATALOGUE, Entity
from resources.reports import FAMILIES
from resources.warehouse import Warehouse
from resources.warehouse import queries as q

FUTURE_MARGIN = dt.timedelta(days=1)  # Klaviyo's clocks and ours may differ; a day ahead is a fault


def _connect(warehouse: Warehouse):
    warehouse.require_migrated()
    return warehouse.engine.connect()


def _checks_for(entry: Entity) -> list[dg.AssetChecksDefinition]:
    table, key = entry.table, dg.AssetKey(["klaviyo", entry.name])
    checks: list[dg.AssetChecksDefinition] = []

    if not entry.unique_by_key and "id" in entry.key:  # members have no id: their key is who, where

        @dg.asset_check(
            asset=key,
            name="unique_ids",
            description=f"No (account_id, id) appears twice in {table} (its key {entry.key} allows it).",
        )
        def unique_ids(warehouse: Warehouse) -> dg.AssetCheckResult:
            with _connect(warehouse) as conn:
                repeated = q.repeated_ids(conn, table)
            return dg.AssetCheckResult(passed=repeated == 0, metadata={"repeated_ids": repeated})

        checks.append(unique_ids)

    required = entry.required_columns
    if required:

        @dg.asset_check(
            asset=key,
            name="required_columns",
            description=f"{', '.join(required)} (nullable) are filled in every live row of {table}.",
        )
        def required_columns(warehouse: Warehouse) -> dg.AssetCheckResult:
            with _connect(warehouse) as conn:
                counts = q.null_counts(conn, table, required, live_only=entry.soft_delete)
            return dg.AssetCheckResult(
                passed=not any(counts.values()), metadata={f"null_{k}": v for k, v in counts.items()}
            )

        checks.append(required_columns)

    @dg.asset_check(
        asset=key,
        name="loaded_what_the_api_reported",
        description="The latest run loaded every record the API returned for its window (none rejected).",
    )
    def loaded_what_the_api_reported(warehouse: Warehouse) -> dg.AssetCheckResult:
        with _connect(warehouse) as conn:
            row = q.latest_sync_run(conn, entry.name)
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

    checks.append(loaded_what_the_api_reported)

    # The tables loaded with the entity's rows (included resources, derived rows) and the column naming their row.
    owned = [(INCLUDED_SHAPES[t].table, INCLUDED_SHAPES[t].owner_column) for t in entry.included_tables]
    owned += [(DERIVED_TABLES[d].table, DERIVED_TABLES[d].owner_column) for d in entry.derived_tables]
    references = list(entry.references) + owned
    if references:

        @dg.asset_check(
            asset=key,
            name="known_references",
            description="Every id a row names has its row: "
            + "; ".join(
                [f"{table}.{c} in {parent}" for c, parent in entry.references]
                + [f"{t}.{c} in {table}" for t, c in owned]
            ),
        )
        def known_references(warehouse: Warehouse) -> dg.AssetCheckResult:
            unknown = {}
            with _connect(warehouse) as conn:
                for column, parent in entry.references:
                    unknown[f"{table}.{column}"] = q.unknown_references(conn, table, column, parent)
                for owned_table, owner_column in owned:
                    unknown[f"{owned_table}.{owner_column}"] = q.unknown_references(
                        conn, owned_table, owner_column, table, live_only=True
                    )
            return dg.AssetCheckResult(
                passed=not any(unknown.values()),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unknown_ids": dg.MetadataValue.json(unknown)},
            )

        checks.append(known_references)

    if entry.soft_delete and entry.guard and entry.cursor:

        @dg.asset_check(
            asset=key,
            name="no_future_updates",
            description=f"No live row of {table} was updated at Klaviyo more than a day from now.",
        )
        def no_future_updates(warehouse: Warehouse) -> dg.AssetCheckResult:
            with _connect(warehouse) as conn:
                ahead = q.updated_in_future(conn, table, entry.guard, FUTURE_MARGIN)
            return dg.AssetCheckResult(passed=not ahead, metadata={"ids": dg.MetadataValue.json(ahead)})

        checks.append(no_future_updates)

    if entry.cursor is not None:

        @dg.asset_check(
            asset=key,
            name="watermark_never_moves_back",
            description=f"No successful {entry.name} run recorded a lower watermark than an earlier one.",
        )
        def watermark_never_moves_back(warehouse: Warehouse) -> dg.AssetCheckResult:
            with _connect(warehouse) as conn:
                back = q.watermark_regressions(conn, entry.name)
            return dg.AssetCheckResult(
                passed=not back,
                metadata={
                    "regressions": dg.MetadataValue.json(
                        [f"{r.run_id}: {r.watermark} after {r.previous}" for r in back]
                    )
                },
            )

        checks.append(watermark_never_moves_back)
    return checks


entity_checks = [check for entry in CATALOGUE.values() for check in _checks_for(entry)]


# -- statistics -------------------------------------------------------------------------------------------
ENTITY_OF = {name: CATALOGUE[f"{name}s"].table for name in FAMILIES}  # each family's entity table


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
        with _connect(warehouse) as conn:
            bad = q.rows_where_any(conn, table, [(c, "<", 0) for c in rates] + [(c, ">", 1) for c in rates])
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_out_of_range": bad})

    @dg.asset_check(asset=key, name="counts_non_negative", description=f"No count in {table} is negative.")
    def counts_non_negative(warehouse: Warehouse) -> dg.AssetCheckResult:
        with _connect(warehouse) as conn:
            bad = q.rows_where_any(conn, table, [(c, "<", 0) for c in counts])
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_with_negative_counts": bad})

    @dg.asset_check(
        asset=key,
        name="known_entities",
        description=f"Every row of {table} refers to a {name} in {ENTITY_OF[name]}.",
    )
    def known_entities(warehouse: Warehouse) -> dg.AssetCheckResult:
        with _connect(warehouse) as conn:
            orphans = q.unknown_references(conn, table, id_column, ENTITY_OF[name])
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
        with _connect(warehouse) as conn:
            rows = q.coverage_gaps(conn, name)
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
        with _connect(warehouse) as conn:
            missing = q.sent_campaigns_without_figures(conn, family.report)
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
        with _connect(warehouse) as conn:
            row = q.latest_run_rejections(conn, family.report)
        return dg.AssetCheckResult(
            passed=row.rejected == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"results_rejected": int(row.rejected), "calls": row.calls, "detail": row.detail or ""},
        )

    coverage = sent_campaigns_have_figures if name == "campaign" else no_missing_days
    return [rates_within_0_1, counts_non_negative, known_entities, coverage, no_rejected_results]


stats_checks = [check for name in STATS_KEYS for check in _stats_checks_for(name)]
