"""The members assets, one per MEMBERS entry of the catalogue: klaviyo/list_members, klaviyo/segment_members.

Unpartitioned: a list's or segment's members are read from its own watermark on joined_group_at, not by day
(see assets/member_sync.py). Each follows its lists or segments asset, whose live rows say what to read."""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.accounts import account_client, account_label, for_each_account
from assets.declaration import catalogue_asset_options
from assets.member_sync import MembersOutcome, MembersRequest, sync_members
from assets.partitions import Scope
from assets.table_metadata import table_metadata
from resources.catalogue import CATALOGUE, MEMBER_ENTITIES
from resources.klaviyo import KlaviyoResource
from resources.warehouse import Warehouse
from resources.warehouse import members as mq


class MembersConfig(dg.Config):
    """Run configuration of a members sync."""

    full_refresh: bool = Field(
        default=False,
        description="Read every member of every list or segment again, ignoring the watermarks (it lists them "
        "too: members no longer found get left_at).",
    )
    lookback_minutes: int = Field(
        default=60, ge=0, description="Incremental reads start this far behind each group's watermark."
    )
    full_listing: bool = Field(
        default=False, description="List every group's member ids now, whatever listing_every_hours says."
    )
    listing_every_hours: float = Field(
        default=24,
        ge=0,
        description="A group's member ids are listed in full (members no longer listed get left_at) when its "
        "last listing is older than this (0: every run). A listing costs one request per 100 members.",
    )
    profile_counts: int = Field(
        default=15,
        ge=0,
        description="How many lists or segments get Klaviyo's profile_count read into member_count this run, "
        "the stalest first. Klaviyo allows 15 such requests a minute (its XS tier).",
    )
    groups: list[str] = Field(default_factory=list, description="Only these list or segment ids.")


def _metadata(outcome: MembersOutcome, client_stats: dict) -> dict:
    meta: dict = {
        "groups_read": outcome.groups,
        "groups_read_in_full": outcome.full_reads,
        "records_read": outcome.records_read,
        "records_rejected": len(outcome.rejected),
        "rows_inserted": outcome.counts.inserted,
        "rows_updated": outcome.counts.updated,
        "rows_skipped": outcome.counts.skipped,
        "full_listings": outcome.listings,
        "member_ids_listed": outcome.listed,
        "members_left": outcome.left,
        "members_back": outcome.back,
        "members_found_by_listing": outcome.found,
        "members_left_with_their_group": outcome.left_with_group,
        "profile_counts_read": len(outcome.member_counts),
        "groups_gone_at_klaviyo": dg.MetadataValue.json(outcome.missing),
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
    return meta


def build_members_asset(entity: str) -> dg.AssetsDefinition:
    entry = CATALOGUE[entity]
    group_column = entry.key[1]

    @dg.asset(**catalogue_asset_options(entry), deps=[dg.AssetKey(["klaviyo", entry.member_of])])
    def _asset(
        context: dg.AssetExecutionContext,
        config: MembersConfig,
        klaviyo: KlaviyoResource,
        warehouse: Warehouse,
    ) -> dg.MaterializeResult:
        warehouse.require_migrated()

        def sync_one(scope: Scope) -> dict:
            # A refused key (401, 403) fails on opening, and is not retried.
            with account_client(klaviyo, warehouse, scope) as client:
                request = MembersRequest(
                    entity=entity,
                    full_refresh=config.full_refresh,
                    lookback=dt.timedelta(minutes=config.lookback_minutes),
                    listing_every=dt.timedelta(hours=config.listing_every_hours),
                    full_listing=config.full_listing,
                    profile_counts=config.profile_counts,
                    groups=tuple(config.groups),
                    run_id=context.run_id,
                )
                outcome = sync_members(request, client, warehouse, log=context.log)
            context.log.info(
                f"klaviyo/{entity}{account_label(scope)}: {outcome.groups} {entry.member_of} read "
                f"({outcome.full_reads} in full), {outcome.records_read} members read, {outcome.counts.inserted} "
                f"inserted, {outcome.counts.updated} updated; {outcome.listings} full listings: {outcome.left} "
                f"left, {outcome.back} back, {outcome.found} found unread; {len(outcome.member_counts)} profile "
                f"counts in {outcome.seconds:.1f} s"
            )
            with warehouse.engine.connect() as conn:
                current = mq.member_counts(conn, entry.table, group_column, outcome.account_id)
            return {
                **_metadata(outcome, client.stats.as_metadata()),
                **table_metadata(warehouse, entry.table),
                "dagster/row_count": sum(current.values()),  # current members (left_at NULL)
            }

        return dg.MaterializeResult(metadata=for_each_account(context, sync_one))

    return _asset


member_assets = [build_members_asset(e) for e in MEMBER_ENTITIES]
