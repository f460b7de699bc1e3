"""The code location: composition only. Loading it applies pending warehouse migrations (once per process),
so that runs, sensor ticks and checks find the schema they expect without running DDL themselves."""

from __future__ import annotations

import logging
import os

import dagster as dg

from assets.bi_views import klaviyo_bi_views
from assets.entities import entity_assets, volume_assets
from assets.partitions import MULTI_ACCOUNT
from assets.reconcile import deletions
from assets.stats import entity_summaries, klaviyo_stats
from assets.webhook_events import webhook_events  # webhooks: the inbox drain
from pipelines import distributed
from pipelines.checks import entity_checks, stats_checks
from pipelines.jobs import all_entities_job, entity_jobs, full_sync_job, reconcile_job, stats_job
from pipelines.schedules import (
    klaviyo_events_reread_schedule,
    klaviyo_incremental_schedule,
    klaviyo_reconcile_profiles_schedule,
    klaviyo_reconcile_schedule,
    klaviyo_settle_schedule,
)
from pipelines.sensors import (
    klaviyo_bootstrap_sensor,
    klaviyo_change_sensor,
    klaviyo_run_failure_sensor,
    klaviyo_stats_automation,
    klaviyo_stats_catchup_sensor,
)
from pipelines.webhook_sensor import klaviyo_webhook_sensor, webhook_events_job  # webhooks
from resources.klaviyo import KlaviyoResource
from resources.warehouse import Warehouse

defs = dg.Definitions(
    assets=[
        *entity_assets,
        *volume_assets,
        klaviyo_stats,
        entity_summaries,
        klaviyo_bi_views,
        deletions,
        webhook_events,
    ],
    asset_checks=[*entity_checks, *stats_checks],
    jobs=[
        all_entities_job,
        full_sync_job,
        stats_job,
        reconcile_job,
        *entity_jobs.values(),
        webhook_events_job,
    ],
    schedules=[
        klaviyo_incremental_schedule,
        klaviyo_settle_schedule,
        klaviyo_events_reread_schedule,
        klaviyo_reconcile_schedule,
        klaviyo_reconcile_profiles_schedule,
    ],
    sensors=[
        klaviyo_change_sensor,
        klaviyo_bootstrap_sensor,
        klaviyo_run_failure_sensor,
        klaviyo_stats_catchup_sensor,
        klaviyo_stats_automation,
        klaviyo_webhook_sensor,  # webhooks
    ],
    resources={
        "klaviyo": KlaviyoResource(
            # With an accounts file each account's key comes from the variable the file names for it.
            api_key="" if MULTI_ACCOUNT else dg.EnvVar("KLAVIYO_API_KEY"),
        ),  # host, revision and time scale: from the environment when a run makes its client
        "warehouse": Warehouse(url=dg.EnvVar("WAREHOUSE_URL")),
    },
    executor=distributed.executor(),  # Celery when KLAVIYO_EXECUTOR=celery, else Dagster's default on a forkserver
)


def reconstructable_full_sync() -> dg.JobDefinition:
    """klaviyo_full_sync, for `dg.reconstructable`: a run whose steps execute elsewhere (Celery workers)
    loads its job from here."""
    return defs.resolve_job_def("klaviyo_full_sync")


def _migrate_on_load() -> None:
    url = os.environ.get("WAREHOUSE_URL")
    if not url:
        return  # nothing configured here (e.g. tests building their own definitions)
    warehouse = Warehouse(url=url)
    try:
        warehouse.ensure_migrated()
    except Exception as exc:  # noqa: BLE001 - the location still loads; runs then say what is missing
        logging.getLogger(__name__).warning(f"warehouse migrations not applied on load: {exc}")
    finally:
        warehouse.dispose()


_migrate_on_load()
