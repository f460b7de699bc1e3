"""The entity assets, from one factory: klaviyo/campaigns, flows, forms, segments, lists, metrics, tags."""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.sync import SyncOutcome, SyncRequest, sync_entity
from pipelines import settings
from pipelines.partitions import daily_partitions
from resources.klaviyo import KlaviyoResource
from resources.warehouse import Warehouse

UTC = dt.UTC
WINDOWED = ("campaigns", "flows", "forms", "segments", "lists", "metrics")
SNAPSHOTS = ("tags",)
ENTITIES = WINDOWED + SNAPSHOTS
DESCRIPTIONS = {
    "campaigns": "Campaigns of every channel (email, sms, mobile_push), archived ones included, by updated_at.",
    "flows": "Flows, archived ones included, by updated.",
    "forms": "Sign-up forms, by updated_at.",
    "segments": "Segments, by updated (Klaviyo filters only greater-than: the upper bound is applied here).",
    "lists": "Lists, by updated (greater-than only, like segments).",
    "metrics": "Metrics; Klaviyo cannot filter them by time, so the window is applied to `updated` here.",
    "tags": "Tags: Klaviyo gives them no timestamp, so each run loads a full snapshot.",
}
FRESHNESS = {
    "campaigns": dt.timedelta(hours=2),
    "flows": dt.timedelta(hours=6),
    "forms": dt.timedelta(hours=6),
    "segments": dt.timedelta(hours=6),
    "lists": dt.timedelta(hours=6),
    "metrics": dt.timedelta(hours=26),
    "tags": dt.timedelta(hours=26),
}


class SyncConfig(dg.Config):
    """Run configuration of an entity sync."""

    full_refresh: bool = Field(default=False, description="Ignore the watermark and read the whole window.")
    lookback_minutes: int = Field(
        default=60, ge=0, description="Incremental runs re-read this far behind the watermark (late writes)."
    )


def _window(context: dg.AssetExecutionContext) -> tuple[dt.datetime | None, dt.datetime | None, str | None]:
    if not context.has_partition_key_range and not context.has_partition_key:
        return None, None, None
    window = context.partition_time_window
    keys = context.partition_key_range
    label = keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"
    start: dt.datetime | None = window.start
    # The first partition also holds everything older than the partitions' start, so a full sync is complete.
    if keys.start == daily_partitions.get_first_partition_key():
        start = None
    return start, window.end, label


def _metadata(outcome: SyncOutcome, client_stats: dict) -> dict:
    meta: dict = {
        "dagster/row_count": outcome.counts.total,
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
    if outcome.rejected:
        meta["rejected_examples"] = dg.MetadataValue.json(
            [{"id": r.id, "reason": r.reason} for r in outcome.rejected[:20]]
        )
    if outcome.preview is not None and not outcome.preview.empty:
        meta["preview"] = dg.MetadataValue.md(outcome.preview.astype(str).to_markdown(index=False))
    return meta


def build_entity_asset(entity: str) -> dg.AssetsDefinition:
    partitioned = entity in WINDOWED

    @dg.asset(
        name=entity,
        key_prefix=["klaviyo"],
        group_name="klaviyo_extract",
        kinds={"python", "postgres"},
        description=DESCRIPTIONS[entity],
        partitions_def=daily_partitions if partitioned else None,
        backfill_policy=dg.BackfillPolicy.single_run() if partitioned else None,
        retry_policy=dg.RetryPolicy(
            max_retries=2,
            delay=settings.step_retry_delay(),
            backoff=dg.Backoff.EXPONENTIAL,
            jitter=dg.Jitter.PLUS_MINUS,
        ),
        pool="klaviyo_api",
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=FRESHNESS[entity]),
        metadata={"table": f"klaviyo_{entity}"},
    )
    def _asset(
        context: dg.AssetExecutionContext, config: SyncConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
    ) -> dg.MaterializeResult:
        warehouse.ensure_migrated()
        start, end, label = _window(context)
        request = SyncRequest(
            entity=entity,
            window_start=start,
            window_end=end,
            full_refresh=config.full_refresh,
            lookback=dt.timedelta(minutes=config.lookback_minutes),
            run_id=context.run_id,
            partition_key=label,
        )
        client = klaviyo.fresh_client()
        try:
            outcome = sync_entity(request, client, warehouse, log=context.log)
        finally:
            client.close()
        context.log.info(
            f"klaviyo/{entity}: {outcome.records_read} records read, {outcome.counts.inserted} inserted, "
            f"{outcome.counts.updated} updated, {outcome.counts.skipped} skipped, "
            f"{len(outcome.rejected)} rejected in {outcome.seconds:.1f} s"
        )
        return dg.MaterializeResult(metadata=_metadata(outcome, client.stats.as_metadata()))

    return _asset


entity_assets = [build_entity_asset(e) for e in ENTITIES]
