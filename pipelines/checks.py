"""Asset checks that can fail: what the primary keys and NOT NULL constraints do not already guarantee.

Entities (from the catalogue): ids unique where the key has more columns, nullable columns a row must have,
every reported record loaded, referenced rows present, no update time in the future, a watermark that never
moves back. Statistics: rates in [0, 1], counts non-negative, known entities, no missing day (campaigns: every
sent campaign has figures), no rejected result. The SQL lives in the warehouse layer (resources/warehouse).

Each check is a spec and a function of a warehouse connection (`CHECKS`, by key). An asset's checks run as
one step (`multi_asset_check`), each on a connection of its own: a run of the UI then starts one process for
an asset's checks, not one per check. `evaluate` runs one check alone (tests, the CLI)."""

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg

from assets.stats import STATS_KEYS
from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES
from resources.catalogue import CATALOGUE, Entity
from resources.reports import FAMILIES
from resources.warehouse import Warehouse
from resources.warehouse import queries as q

FUTURE_MARGIN = dt.timedelta(days=1)  # Klaviyo's clocks and ours may differ; a day ahead is a fault


@dataclass(frozen=True)
class Check:
    spec: dg.AssetCheckSpec
    evaluate: Callable  # (connection) -> dg.AssetCheckResult, its key left for `_result` to fill in


def _declare(checks: list[Check], asset: dg.AssetKey, name: str, description: str):
    """A decorator: the function (of a connection) becomes the check `name` of `asset`, added to `checks`."""

    def add(evaluate: Callable) -> Callable:
        checks.append(Check(dg.AssetCheckSpec(name, asset=asset, description=description), evaluate))
        return evaluate

    return add


def _result(check: Check, warehouse: Warehouse) -> dg.AssetCheckResult:
    with warehouse.engine.connect() as conn:
        outcome = check.evaluate(conn)
    return dg.AssetCheckResult(
        asset_key=check.spec.asset_key,
        check_name=check.spec.name,
        passed=outcome.passed,
        severity=outcome.severity,
        metadata=outcome.metadata,
        description=outcome.description,
    )


def _checks_for(entry: Entity) -> list[Check]:
    table, key = entry.table, dg.AssetKey(["klaviyo", entry.name])
    checks: list[Check] = []

    if not entry.unique_by_key and "id" in entry.key:  # members have no id: their key is who, where

        @_declare(
            checks,
            key,
            "unique_ids",
            f"No (account_id, id) appears twice in {table} (its key {entry.key} allows it).",
        )
        def unique_ids(conn) -> dg.AssetCheckResult:
            repeated = q.repeated_ids(conn, table)
            return dg.AssetCheckResult(passed=repeated == 0, metadata={"repeated_ids": repeated})

    required = entry.required_columns
    if required:

        @_declare(
            checks,
            key,
            "required_columns",
            f"{', '.join(required)} (nullable) are filled in every live row of {table}.",
        )
        def required_columns(conn) -> dg.AssetCheckResult:
            counts = q.null_counts(conn, table, required, live_only=entry.soft_delete)
            return dg.AssetCheckResult(
                passed=not any(counts.values()), metadata={f"null_{k}": v for k, v in counts.items()}
            )

    @_declare(
        checks,
        key,
        "loaded_what_the_api_reported",
        "The latest run loaded every record the API returned for its window (none rejected).",
    )
    def loaded_what_the_api_reported(conn) -> dg.AssetCheckResult:
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

    # The tables loaded with the entity's rows (included resources, derived rows) and the column naming their row.
    owned = [(INCLUDED_SHAPES[t].table, INCLUDED_SHAPES[t].owner_column) for t in entry.included_tables]
    owned += [(DERIVED_TABLES[d].table, DERIVED_TABLES[d].owner_column) for d in entry.derived_tables]
    references = list(entry.references) + owned
    if references:

        @_declare(
            checks,
            key,
            "known_references",
            "Every id a row names has its row: "
            + "; ".join(
                [f"{table}.{c} in {parent}" for c, parent in entry.references]
                + [f"{t}.{c} in {table}" for t, c in owned]
            ),
        )
        def known_references(conn) -> dg.AssetCheckResult:
            unknown = {}
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

    if entry.soft_delete and entry.guard and entry.cursor:

        @_declare(
            checks,
            key,
            "no_future_updates",
            f"No live row of {table} was updated at Klaviyo more than a day from now.",
        )
        def no_future_updates(conn) -> dg.AssetCheckResult:
            ahead = q.updated_in_future(conn, table, entry.guard, FUTURE_MARGIN)
            return dg.AssetCheckResult(passed=not ahead, metadata={"ids": dg.MetadataValue.json(ahead)})

    if entry.cursor is not None:

        @_declare(
            checks,
            key,
            "watermark_never_moves_back",
            f"No successful {entry.name} run recorded a lower watermark than an earlier one.",
        )
        def watermark_never_moves_back(conn) -> dg.AssetCheckResult:
            back = q.watermark_regressions(conn, entry.name)
            return dg.AssetCheckResult(
                passed=not back,
                metadata={
                    "regressions": dg.MetadataValue.json(
                        [f"{r.run_id}: {r.watermark} after {r.previous}" for r in back]
                    )
                },
            )

    return checks


entity_checks = [check for entry in CATALOGUE.values() for check in _checks_for(entry)]


# -- statistics -------------------------------------------------------------------------------------------
ENTITY_OF = {name: CATALOGUE[f"{name}s"].table for name in FAMILIES}  # each family's entity table


def _stats_checks_for(name: str) -> list[Check]:
    checks: list[Check] = []
    family = FAMILIES[name]
    table, key = family.table, STATS_KEYS[name]
    rates = [c for c in family.figures if c.endswith("_rate")]
    counts = [c for c in family.counts if c != "net_members_changed"]
    id_column = f"{name}_id"

    @_declare(checks, key, "rates_within_0_1", f"Every rate in {table} is in [0, 1].")
    def rates_within_0_1(conn) -> dg.AssetCheckResult:
        if not rates:
            return dg.AssetCheckResult(passed=True, metadata={"rates": "none in this report"})
        bad = q.rows_where_any(conn, table, [(c, "<", 0) for c in rates] + [(c, ">", 1) for c in rates])
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_out_of_range": bad})

    @_declare(checks, key, "counts_non_negative", f"No count in {table} is negative.")
    def counts_non_negative(conn) -> dg.AssetCheckResult:
        bad = q.rows_where_any(conn, table, [(c, "<", 0) for c in counts])
        return dg.AssetCheckResult(passed=bad == 0, metadata={"rows_with_negative_counts": bad})

    @_declare(
        checks,
        key,
        "known_entities",
        f"Every row of {table} refers to a {name} in {ENTITY_OF[name]}.",
    )
    def known_entities(conn) -> dg.AssetCheckResult:
        orphans = q.unknown_references(conn, table, id_column, ENTITY_OF[name])
        return dg.AssetCheckResult(
            passed=not orphans,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"unknown_ids": dg.MetadataValue.json(orphans)},
        )

    # Coverage: every sent campaign has its figures; the series families, no day missing.
    if name == "campaign":

        @_declare(
            checks,
            key,
            "sent_campaigns_have_figures",
            "Every campaign sent (status Sent) at least a day before the latest campaign report call "
            "and since the first one has a row in klaviyo_campaign_stats.",
        )
        def sent_campaigns_have_figures(conn) -> dg.AssetCheckResult:
            missing = q.sent_campaigns_without_figures(conn, family.report)
            return dg.AssetCheckResult(
                passed=not missing,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"campaigns_without_figures": dg.MetadataValue.json(missing)},
            )

    else:

        @_declare(
            checks,
            key,
            "no_missing_days",
            f"No day is missing between the first and last day {name} statistics were loaded for.",
        )
        def no_missing_days(conn) -> dg.AssetCheckResult:
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

    @_declare(
        checks,
        key,
        "no_rejected_results",
        f"The latest run's {family.report} responses had no result that could not be read.",
    )
    def no_rejected_results(conn) -> dg.AssetCheckResult:
        row = q.latest_run_rejections(conn, family.report)
        return dg.AssetCheckResult(
            passed=row.rejected == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"results_rejected": int(row.rejected), "calls": row.calls, "detail": row.detail or ""},
        )

    return checks


def _one_step(asset: dg.AssetKey, checks: list[Check]) -> dg.AssetChecksDefinition:
    """An asset's checks as one step: each selected check evaluated in turn."""

    @dg.multi_asset_check(
        specs=[c.spec for c in checks],
        name=f"{'__'.join(asset.path)}_checks",
        description=f"The asset checks of {asset.to_user_string()}.",
        can_subset=True,
    )
    def run_checks(
        context: dg.AssetCheckExecutionContext, warehouse: Warehouse
    ) -> Iterator[dg.AssetCheckResult]:
        warehouse.require_migrated()
        for check in checks:
            if check.spec.key in context.selected_asset_check_keys:
                yield _result(check, warehouse)

    return run_checks


_ENTITIES = {dg.AssetKey(["klaviyo", e.name]): _checks_for(e) for e in CATALOGUE.values()}
_STATISTICS = {key: _stats_checks_for(name) for name, key in STATS_KEYS.items()}
CHECKS: dict[dg.AssetCheckKey, Check] = {
    c.spec.key: c for checks in [*_ENTITIES.values(), *_STATISTICS.values()] for c in checks
}
entity_checks = [_one_step(asset, checks) for asset, checks in _ENTITIES.items()]
stats_checks = [_one_step(asset, checks) for asset, checks in _STATISTICS.items()]


def evaluate(warehouse: Warehouse, key: dg.AssetCheckKey) -> dg.AssetCheckResult:
    """One check, alone, on the warehouse."""
    warehouse.require_migrated()
    return _result(CHECKS[key], warehouse)
