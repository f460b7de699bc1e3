"""Runs spread over machines: Dagster's Celery executor (dagster-celery), opt-in with KLAVIYO_EXECUTOR=celery.

Each step of a run becomes a Celery task on a queue of the broker (RabbitMQ by default); `klaviyo-pipeline worker`
starts a worker that takes them, on any machine that reaches the broker, the Dagster instance (Postgres) and
the warehouse (Postgres). The run itself (the executor's loop) runs wherever it was launched: the CLI, or the
run launcher's process. Settings, each read from the environment once here:

- KLAVIYO_EXECUTOR: `celery` turns it on (default: Dagster's multiprocess executor, steps forked from a
  `forkserver`; the CLI's sync runs in process unless it is on);
- KLAVIYO_CELERY_BROKER: the broker's URL (default `pyamqp://guest:guest@127.0.0.1:5672//`, RabbitMQ here);
- KLAVIYO_CELERY_BACKEND: Celery's result backend (default `rpc://`, through the broker);
- KLAVIYO_CELERY_QUEUE: the queue runs submit their steps to and workers take them from (default `dagster`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CelerySettings:
    broker: str
    backend: str
    queue: str


def enabled() -> bool:
    return os.environ.get("KLAVIYO_EXECUTOR", "").strip().lower() == "celery"


def celery_settings() -> CelerySettings:
    return CelerySettings(
        broker=os.environ.get("KLAVIYO_CELERY_BROKER", "pyamqp://guest:guest@127.0.0.1:5672//"),
        backend=os.environ.get("KLAVIYO_CELERY_BACKEND", "rpc://"),
        queue=os.environ.get("KLAVIYO_CELERY_QUEUE", "dagster"),
    )


def _forkserver_by_default(config: dict) -> dict:
    """A run's executor config, with `forkserver` as the multiprocess executor's start method unless the run
    config names one."""
    if "multiprocess" not in config:
        return config  # in_process
    return {"multiprocess": {"start_method": {"forkserver": {}}, **config["multiprocess"]}}


def executor():
    """The jobs' executor: Celery's when KLAVIYO_EXECUTOR=celery, else Dagster's default one (a process per
    step, or all in one process when the run config asks) with the step processes forked from a server that
    imported the code location once (`forkserver`, which Dagster preloads with the job's module) rather than
    each started afresh (`spawn`, Dagster's default: every step of a run importing Dagster, pandas and this
    project again, about 3 cpu-s a step). Its config, the run config's `execution`, is Dagster's own, with
    the same default; a run config can still name `spawn`."""
    import dagster as dg

    if not enabled():
        default = dg.multi_or_in_process_executor
        return default.configured(_forkserver_by_default, config_schema=default.config_schema.as_field())
    from dagster_celery import celery_executor

    s = celery_settings()
    return celery_executor.configured(
        {"broker": s.broker, "backend": s.backend, "config_source": {"task_default_queue": s.queue}},
        name="klaviyo_celery_executor",
    )


def worker_command(directory: Path, name: str, concurrency: int) -> tuple[list[str], dict[str, str]]:
    """The `celery worker` command (and its environment) that takes this project's steps: the app is
    dagster-celery's, its settings (broker, backend, queue) a `dagster_celery_config` module written to
    `directory`, which that app imports when it finds it."""
    s = celery_settings()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "dagster_celery_config.py").write_text(
        f"broker_url = {s.broker!r}\nresult_backend = {s.backend!r}\ntask_default_queue = {s.queue!r}\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(directory), env.get("PYTHONPATH")]))
    argv = [
        sys.executable, "-m", "celery", "-A", "dagster_celery.app", "worker", "--prefetch-multiplier=1", "--loglevel", "INFO",
        "-Q", s.queue, "-n", f"{name}@%h", "-c", str(concurrency), "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    return argv, env
