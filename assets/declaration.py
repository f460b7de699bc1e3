"""How an asset built from a catalogue entry is declared in Dagster: one set of options for the entity, nested
and members factories (name, group, kinds, owners, code version, retries, pool, freshness, table)."""

import dagster as dg

from assets.table_metadata import code_version
from resources import settings
from resources.catalogue import Entity


def step_retry_policy() -> dg.RetryPolicy:
    """A step that failed for a passing reason is retried twice, backing off exponentially with jitter."""
    return dg.RetryPolicy(
        max_retries=2,
        delay=settings.step_retry_delay(),
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )


# The pool of every step that talks to Klaviyo (instance/dagster.yaml: concurrency.pools sets its limit).
API_POOL = "klaviyo_api"


def catalogue_asset_options(entry: Entity, *facts) -> dict:
    """`dg.asset` options of the catalogue entry's asset; `facts`: what else its code version covers (e.g. its
    transform's shape)."""
    return {
        "name": entry.name,
        "key_prefix": ["klaviyo"],
        "group_name": entry.group,
        "kinds": {"python", "pandas", "postgres"},
        "owners": settings.asset_owners(),
        "code_version": code_version(entry, *facts),
        "description": entry.description,
        "retry_policy": step_retry_policy(),
        "pool": API_POOL,
        "freshness_policy": dg.FreshnessPolicy.time_window(fail_window=entry.freshness),
        "metadata": {"table": entry.table, "dagster/table_name": entry.table},
    }
