"""The entity assets, from one factory over the catalogue (resources/catalogue.py): klaviyo/campaigns, flows,
forms, segments, lists, metrics, tags, profiles, events, and the nested ones read under a parent's changed
records (flow_messages under flows, form_versions under forms: assets/nested.py)."""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.accounts import REFUSED, account_client, account_label, for_each_account
from assets.declaration import catalogue_asset_options
from assets.members import member_assets
from assets.nested import sync_nested
from assets.partitions import Scope, entity_partitions
from assets.sync import SyncOutcome, SyncRequest, sync_entity
from assets.table_metadata import partition_metadata, table_metadata
from assets.transform import SHAPES
from resources.catalogue import CATALOGUE, NESTED_ENTITIES, SMALL_ENTITIES, VOLUME_ENTITIES
from resources.klaviyo import KlaviyoResource
from resources.klaviyo_api import Cond
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse.ledger import metric_ids_by_name

UTC = dt.UTC


class SyncConfig(dg.Config):
    """Run configuration of an entity sync."""

    full_refresh: bool = Field(default=False, description="Ignore the watermark and read the whole window.")
    lookback_minutes: int = Field(
        default=60, ge=0, description="Incremental runs re-read this far behind the watermark (late writes)."
    )


class ProfilesConfig(SyncConfig):
    """Run configuration of the profiles sync."""

    subscriptions: bool = Field(default=False, description="Also load consent and suppression state.")
    predictive_analytics: bool = Field(
        default=False, description="Also load predictions (opt-in: Klaviyo then allows only 10 requests/s)."
    )


class EventsConfig(SyncConfig):
    """Run configuration of the events sync."""

    lookback_minutes: int = Field(
        default=3 * 24 * 60, ge=0, description="Incremental runs re-read this far behind the watermark."
    )
    metric_ids: list[str] = Field(default_factory=list, description="Only these metrics (ids).")
    metric_names: list[str] = Field(
        default_factory=list,
        description="Only these metrics, by name, resolved to ids per account at run time.",
    )
    reread_days: int = Field(
        default=0,
        ge=0,
        description="A run of today's partition also re-reads the events of this many days back from now: events "
        "Klaviyo received late with an older datetime (imports) are otherwise never read, since Klaviyo cannot "
        "filter events by when it received them. The weekly deep re-read schedule sets 30.",
    )


CONFIGS: dict[str, type[SyncConfig]] = {"profiles": ProfilesConfig, "events": EventsConfig}


def _request_options(entity: str, config: SyncConfig, client, warehouse: Warehouse) -> dict:
    """Entity-specific request options: additional fields for profiles, metric passes for events."""
    if isinstance(config, ProfilesConfig):
        extra = [
            f
            for f, on in (
                ("subscriptions", config.subscriptions),
                ("predictive_analytics", config.predictive_analytics),
            )
            if on
        ]
        return {"additional_fields": tuple(extra)}
    options: dict = {}
    if isinstance(config, EventsConfig) and config.reread_days:
        options["reread"] = dt.timedelta(days=config.reread_days)
    if isinstance(config, EventsConfig) and (config.metric_ids or config.metric_names):
        ids = list(config.metric_ids)
        if config.metric_names:
            with warehouse.engine.connect() as conn:
                found = metric_ids_by_name(conn, client.account_id(), config.metric_names)
            missing = sorted(set(config.metric_names) - set(found))
            if missing:
                raise dg.Failure(
                    f"klaviyo/{entity}: no metric named {missing} in klaviyo_metrics; sync metrics first",
                    allow_retries=False,
                )
            ids += [found[name][0] for name in config.metric_names]  # the oldest of a repeated name
        options["filter_passes"] = tuple((Cond("equals", "metric_id", mid),) for mid in dict.fromkeys(ids))
    return options


def _metadata(outcome: SyncOutcome, client_stats: dict) -> dict:
    meta: dict = {
        "rows_inserted": outcome.counts.inserted,
        "rows_updated": outcome.counts.updated,
        "rows_skipped": outcome.counts.skipped,
        "records_read": outcome.records_read,
        "records_rejected": len(outcome.rejected),
        "window_start": outcome.read_start.isoformat() if outcome.read_start else "beginning",
        "window_end": outcome.read_end.isoformat() if outcome.read_end else "now",
        "watermark": outcome.watermark.isoformat() if outcome.watermark else "none",
        "account_id": outcome.account_id,
        "seconds": round(outcome.seconds, 3),
        **{k: v for k, v in client_stats.items() if k != "api_per_endpoint"},
        "api_per_endpoint": dg.MetadataValue.json(client_stats["api_per_endpoint"]),
    }
    for table, counts in outcome.included.items():
        name = table.removeprefix("klaviyo_")
        meta[f"{name}_inserted"] = counts.inserted
        meta[f"{name}_updated"] = counts.updated
        meta[f"{name}_skipped"] = counts.skipped
    for table, n in outcome.removed.items():
        meta[f"{table.removeprefix('klaviyo_')}_deleted"] = n
    if CATALOGUE[outcome.entity].parent is not None:
        meta["parents_read"] = outcome.parents_read
        meta["parents_gone"] = len(outcome.parents_gone)
    if outcome.rejected:
        meta["rejected_examples"] = dg.MetadataValue.json(
            [{"id": r.id, "reason": r.reason} for r in outcome.rejected[:20]]
        )
    if outcome.preview is not None and not outcome.preview.empty:
        meta["preview"] = dg.MetadataValue.md(outcome.preview.astype(str).to_markdown(index=False))
    return meta


def _rows_by_day(scope: Scope, outcome: SyncOutcome, warehouse: Warehouse) -> dict:
    """The entity's live rows per partition day of the account's share of the run (its cursor column's UTC day)."""
    entry = CATALOGUE[outcome.entity]
    with warehouse.engine.connect() as conn:
        return q.rows_per_day(
            conn,
            entry.table,
            entry.cursor_column,
            outcome.account_id,
            dt.date.fromisoformat(scope.first_day),
            dt.date.fromisoformat(scope.last_day),
            utc=True,
            with_history=scope.with_history,
        )


def build_entity_asset(entity: str) -> dg.AssetsDefinition:
    entry = CATALOGUE[entity]
    partitioned = entry.partitioned
    config_class = CONFIGS.get(entity, SyncConfig)
    sync = sync_nested if entry.parent is not None else sync_entity

    @dg.asset(
        **catalogue_asset_options(entry, SHAPES.get(entity)),
        # A nested entity reads under the rows its parent's run just loaded (the same partition's window).
        deps=[dg.AssetKey(["klaviyo", entry.parent.entity])] if entry.parent is not None else None,
        partitions_def=entity_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
    )
    def _asset(
        context: dg.AssetExecutionContext,
        config: config_class,
        klaviyo: KlaviyoResource,
        warehouse: Warehouse,
    ) -> dg.MaterializeResult:
        warehouse.require_migrated()
        results: dict = {}

        def sync_one(scope: Scope) -> dict:
            start, end = scope.window()
            # A refused key (401, 403) fails on opening, and is not retried.
            with account_client(klaviyo, warehouse, scope) as client:
                request = SyncRequest(
                    entity=entity,
                    window_start=start,
                    window_end=end,
                    full_refresh=config.full_refresh,
                    lookback=dt.timedelta(minutes=config.lookback_minutes),
                    run_id=context.run_id,
                    partition_key=scope.label,
                    **_request_options(entity, config, client, warehouse),
                )
                outcome = sync(request, client, warehouse, log=context.log)
            context.log.info(
                f"klaviyo/{entity}{account_label(scope)}: {outcome.records_read} records read, "
                f"{outcome.counts.inserted} inserted, {outcome.counts.updated} updated, {outcome.counts.skipped} "
                f"skipped, {len(outcome.rejected)} rejected in {outcome.seconds:.1f} s"
                + "".join(
                    f"; {table}: {c.inserted} inserted, {c.updated} updated, {c.skipped} skipped"
                    for table, c in outcome.included.items()
                )
            )
            window = {
                **_metadata(outcome, client.stats.as_metadata()),
                **table_metadata(warehouse, entry.table),
            }
            if not partitioned:
                results[outcome.account_id] = outcome.counts.total
                return {**window, "dagster/row_count": sum(results.values())}
            # A nested entity's rows have no day of the partitions' (they follow their parent's): none per day.
            by_day = _rows_by_day(scope, outcome, warehouse) if entry.parent is None else None
            return partition_metadata(context, context.asset_key, scope.keys, window, by_day)

        metadata = for_each_account(context, sync_one, REFUSED)
        return dg.MaterializeResult(metadata=metadata)

    return _asset


entity_assets = [build_entity_asset(e) for e in SMALL_ENTITIES + NESTED_ENTITIES]
# The streamed assets: profiles and events, and the members of lists and segments (their own factory).
volume_assets = [build_entity_asset(e) for e in VOLUME_ENTITIES] + member_assets
