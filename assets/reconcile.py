"""Deletion reconciliation: Klaviyo's API never reports a deletion, so an asset lists every id of the small
entities and soft-deletes the rows Klaviyo no longer has, with what hangs off them; the resources a listing
includes (a flow's steps) and a record's derived rows (a campaign's audiences) are checked against what each
record lists, and the nested entities (flow messages, form versions) get a full pass under every live parent."""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
from pydantic import Field

from assets.accounts import REFUSED, account_client, account_label, for_each_account
from assets.declaration import API_POOL
from assets.dependents import cascade_deleted
from assets.nested import sync_nested
from assets.partitions import Scope
from assets.sync import SyncRequest, listed_included
from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES, transform_derived
from resources import settings
from resources.catalogue import CATALOGUE, NESTED_ENTITIES, SMALL_ENTITIES, VOLUME_ENTITIES
from resources.klaviyo import KlaviyoClient, KlaviyoResource
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse.listing import IdListing, ShareExceeded

UTC = dt.UTC


@dataclass
class Reconciled:
    """What a deletion reconciliation found for one entity."""

    entity: str
    listed: int
    marked_deleted: list[str]


class ReconcileRefused(RuntimeError):
    """A listing would mark too many rows deleted at once (more likely a short listing than a mass deletion)."""


def reconcile_deletions(
    entity: str,
    client: KlaviyoClient,
    warehouse: Warehouse,
    max_deleted_share: float = 0.5,
) -> Reconciled:
    """Klaviyo's API never reports deletions: list every id of the entity and mark the live rows it no longer
    lists with `deleted_at` (never a hard delete; a later sync that sees the record again revives it).

    Only rows last synced before the listing began are candidates, so a record created meanwhile and loaded
    by a concurrent sync is not mistaken for a deleted one. Nothing is marked if the listing fails, or if it
    would mark more than `max_deleted_share` of the live rows."""
    plan = CATALOGUE[entity]
    if plan.streaming:
        return reconcile_streamed(entity, client, warehouse, max_deleted_share)
    if plan.parent is not None:
        # A nested entity: a full pass under every live parent marks what each no longer lists.
        outcome = sync_nested(SyncRequest(entity, None, None, full_refresh=True), client, warehouse)
        return Reconciled(entity, outcome.records_read, sorted(outcome.marked_deleted))
    account_id = client.account_id()
    began = dt.datetime.now(UTC)
    # With the included resources: the relationship data then lists all each record has (no extra request).
    records = [
        r
        for page in client.list_window(entity, include=plan.include if plan.included_tables else ())
        for r in page.records
        if isinstance(r, dict) and "id" in r
    ]
    ids = [r["id"] for r in records]
    with warehouse.transaction() as conn:
        live = q.live_rows(conn, plan.table, account_id)
        gone = q.mark_unlisted_deleted(conn, plan.table, account_id, ids, began)
        if gone and len(gone) > max_deleted_share * live:
            raise ReconcileRefused(
                f"klaviyo/{entity}: the listing ({len(ids)} ids) would mark {len(gone)} of {live} live rows "
                f"deleted (over {max_deleted_share:.0%}); nothing was marked"
            )
        cascade_deleted(conn, plan.table, account_id, gone)  # e.g. a deleted campaign's messages
        for resource_type in plan.included_tables:  # e.g. a step a flow no longer lists
            shape = INCLUDED_SHAPES[resource_type]
            listed = listed_included(records, resource_type, ids)
            removed = q.mark_unlisted_owned_deleted(
                conn, shape.table, shape.owner_column, ("account_id", "id"), account_id, list(listed),
                [(i,) for owned in listed.values() for i in owned], listed_since=began,
            )  # fmt: skip
            cascade_deleted(conn, shape.table, account_id, [k[0] for k in removed])
        for name in plan.derived_tables:  # e.g. an audience a campaign no longer has
            derived = DERIVED_TABLES[name]
            frame = transform_derived(name, records, dict.fromkeys(ids), account_id)
            kept = [k for k in derived.key if k != "account_id"]
            q.mark_unlisted_owned_deleted(
                conn, derived.table, derived.owner_column, derived.key, account_id, ids,
                list(frame[kept].itertuples(index=False, name=None)), listed_since=began,
            )  # fmt: skip
    return Reconciled(entity, len(ids), sorted(gone))


def reconcile_streamed(
    entity: str, client: KlaviyoClient, warehouse: Warehouse, max_deleted_share: float = 0.5
) -> Reconciled:
    """`reconcile_deletions` for a streamed entity (profiles): a sparse fieldset of the ids alone
    (`fields[<type>]=id`), the largest page the endpoint allows, every id copied batch by batch into a temporary
    table (flat memory, whatever the account's size), then one anti-join marks the live rows it did not list.
    A million profiles are 10,000 requests: about 14 minutes in Klaviyo's L tier (750 a minute; the client
    paces at 700)."""
    plan = CATALOGUE[entity]
    endpoint = plan.endpoint
    params = {f"fields[{endpoint.type}]": "id"}
    if endpoint.page_size is not None:
        params["page[size]"] = str(endpoint.page_size)
    account_id = client.account_id()
    began = dt.datetime.now(UTC)
    with IdListing(warehouse) as listing:
        batch: list[str] = []
        for page in client.iter_pages(endpoint, params):
            batch += [r["id"] for r in page.records if isinstance(r, dict) and isinstance(r.get("id"), str)]
            if len(batch) >= plan.batch_rows:
                listing.add(batch)
                batch = []
        listing.add(batch)
        try:
            gone, live = listing.mark_unlisted_deleted(plan.table, account_id, began, max_deleted_share)
        except ShareExceeded as exc:
            raise ReconcileRefused(
                f"klaviyo/{entity}: the listing ({listing.added} ids) would mark {exc.marked} of {exc.live} live "
                f"rows deleted (over {max_deleted_share:.0%}); nothing was marked"
            ) from None
        return Reconciled(entity, listing.added, sorted(gone))


# Parents before what is nested under them: a deleted flow's steps are marked before the steps are read under.
RECONCILED = SMALL_ENTITIES + NESTED_ENTITIES
# Reconciled on their own, less often (their listing is long): profiles, weekly (klaviyo_reconcile_profiles_schedule).
STREAMED = tuple(e for e in VOLUME_ENTITIES if CATALOGUE[e].soft_delete)


class ReconcileConfig(dg.Config):
    """Run configuration of the deletion reconciliation."""

    entities: list[str] = Field(
        default_factory=lambda: list(RECONCILED), description="Entities to reconcile."
    )
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
    owners=settings.asset_owners(),
    deps=[dg.AssetKey(["klaviyo", e]) for e in RECONCILED + STREAMED],
    pool=API_POOL,
    description="Marks rows of campaigns, flows, forms, segments, lists, metrics and tags that Klaviyo no longer "
    "lists with deleted_at (one full id listing per entity; profiles when asked, weekly by their schedule: a "
    "listing of ids alone; events are never deleted), with their "
    "messages, steps and audiences; flow messages and form versions get a full pass under every live parent.",
)
def deletions(
    context: dg.AssetExecutionContext, config: ReconcileConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    warehouse.require_migrated()
    unknown = sorted(set(config.entities) - set(RECONCILED + STREAMED))
    if unknown:
        accepted = list(RECONCILED + STREAMED)
        raise dg.Failure(f"cannot reconcile {unknown}: only {accepted}", allow_retries=False)

    def reconcile_one(scope: Scope) -> dict:
        found = {}
        with account_client(klaviyo, warehouse, scope) as client:
            for entity in config.entities:
                result = reconcile_deletions(entity, client, warehouse, config.max_deleted_share)
                found[entity] = result
                context.log.info(
                    f"klaviyo/{entity}{account_label(scope)}: {result.listed} ids listed, "
                    f"{len(result.marked_deleted)} rows marked deleted"
                )
        return {
            **{f"deleted_{e}": len(r.marked_deleted) for e, r in found.items()},
            **{f"listed_{e}": r.listed for e, r in found.items()},
            "deleted_ids": dg.MetadataValue.json({e: r.marked_deleted[:50] for e, r in found.items()}),
            "api_calls": client.stats.totals().calls,
        }

    return dg.MaterializeResult(
        metadata=for_each_account(context, reconcile_one, (*REFUSED, ReconcileRefused))
    )
