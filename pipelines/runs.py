"""How the CLI runs (a subset of) klaviyo_full_sync: as a run of the job that workspace.yaml's code location
loads, so that Dagster's UI files it under that job and re-executes it without warning that the job may differ.

Such a run records two things that `execute_in_process` leaves out:
- the code location's origin (workspace.yaml's location, the `Definitions`' `__repository__`), so the run
  appears under `klaviyo_full_sync → Runs`;
- the job's snapshot as the code location builds it. The job is reconstructed from `pipelines.definitions`, and
  its in-process execution is chosen in the run config (the default executor's `in_process`), not by swapping
  the executor, so the snapshot is the one the UI loads.

With KLAVIYO_EXECUTOR=celery the steps go to the Celery workers instead, each reconstructing the job from the
same place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cache

import dagster as dg

from pipelines import distributed
from pipelines.environment import PROJECT_ROOT

JOB_NAME = "klaviyo_full_sync"
WORKSPACE = PROJECT_ROOT / "workspace.yaml"
REPOSITORY = "__repository__"  # the one repository a `Definitions` object makes


@cache
def job_origin(job_name: str = JOB_NAME):
    """Where the UI finds the job: workspace.yaml's (first) code location, its repository, the job's name (the
    file read once per process)."""
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    location = location_origins_from_yaml_paths([str(WORKSPACE)])[0]
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY), job_name)


def execute(
    instance: dg.DagsterInstance,
    run_config: Mapping,
    tags: Mapping[str, str],
    assets: set[dg.AssetKey] | None,
    checks: set[dg.AssetCheckKey],
) -> dg.JobExecutionResult:
    """One run of klaviyo_full_sync restricted to `assets` (None: none of them) and `checks`, in this process (or
    on the Celery workers), filed under the job; its result (never raises for a failed step)."""
    from dagster._core.execution.api import execute_run

    from pipelines.definitions import reconstructable_full_sync

    job = dg.reconstructable(reconstructable_full_sync).get_subset(
        asset_selection=assets, asset_check_selection=checks
    )
    if not distributed.enabled():
        run_config = {**run_config, "execution": {"config": {"in_process": {}}}}
    run = instance.create_run_for_job(
        job_def=job.get_definition(),
        run_config=run_config,
        tags=tags,
        job_code_origin=job.get_python_origin(),
        remote_job_origin=job_origin(),
    )
    return execute_run(job, run, instance, raise_on_error=False)


def pooled(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """The instance, holding its Postgres connections open (a small pool) for the runs this process executes.
    Dagster's storage otherwise opens a new connection for each event it writes: about 1,900 for a first sync,
    seconds of a run. This is what the webserver does with its instance; no statement timeout here."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
    return instance


def pool_ready(instance: dg.DagsterInstance, pool: str, attempts: int = 5) -> None:
    """A pool's row in a new instance, made before a run needs it: several syncs started at once on a new
    instance would each insert it when their first step starts, and all but one fail (Dagster's insert, on
    Postgres, aborts its transaction when it loses). Here a process that loses looks again and finds the row."""
    storage = instance.event_log_storage
    for attempt in range(attempts):
        if pool in storage.get_concurrency_keys():
            return
        try:
            storage.initialize_concurrency_limit_to_default(pool)
            return
        except Exception:  # noqa: BLE001 - another process made the row meanwhile: look again
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
