"""Dagster's default run launcher plus the worker health check that Dagster's run monitoring needs.

Dagster's `DefaultRunLauncher` starts each run in a process of the code server on this machine, but cannot say
whether that process still lives: after a `kill -9` (or an out-of-memory kill) the run stays STARTED forever.
This launcher answers run monitoring's question from what the run itself recorded: the run worker logs
"Started process for run (pid: N)" as its first engine event (a run the CLI executes in its own process
carries that pid as the tag `klaviyo/pid`); the worker is healthy while that process is
alive and not a zombie. Run monitoring (instance/dagster.yaml) then marks a run whose worker is gone as failed
within one poll interval, and run retries start it again; `klaviyo_run_failure_sensor` marks its entities
`interrupted` in klaviyo_sync_status.

Like the default launcher it serves one machine (the code server's): a pid means nothing elsewhere. Runs on
several machines use a launcher whose workers Dagster can see (Celery, Kubernetes).
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

STARTED = "Started process for run (pid: "
PID_TAG = "klaviyo/pid"  # runs executed in a process of their own (`klaviyo-pipeline sync`) name it here


def worker_pid(instance, run_id: str) -> int | None:
    """The pid the run's worker recorded when it started (None: not started yet)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and PID_TAG in run.tags:
        return int(run.tags[PID_TAG])
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        message = (event.message if event is not None else None) or record.event_log_entry.user_message or ""
        if message.startswith(STARTED):
            return int(message[len(STARTED) :].split(")", 1)[0])
    return None


def process_alive(pid: int) -> bool:
    """The process exists and has not exited (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("State:"):
                return "Z" not in line.split(":", 1)[1].split()[0]
    return True


class MonitoredRunLauncher(DefaultRunLauncher):
    """`DefaultRunLauncher` whose run workers run monitoring can check (see the module's docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        pid = worker_pid(self._instance, run.run_id)
        if pid is None:
            # Not recorded (yet: the code server reports it a moment after the run starts; or never, for a run
            # executed by other means): no evidence of death. Run monitoring counts anything but RUNNING as a
            # dead worker, so this must not say UNKNOWN.
            return CheckRunHealthResult(
                WorkerStatus.RUNNING, "the run worker has not recorded its process yet"
            )
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run worker (pid {pid}) is gone: killed or crashed",
            run_worker_id=str(pid),
        )
