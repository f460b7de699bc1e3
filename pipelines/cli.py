"""`klaviyo-pipeline`: the main job in one command, the UI on the same instance, migrations, the simulator.

klaviyo-pipeline sync                  # full sync of every entity and the report statistics
klaviyo-pipeline sync --start 2026-11-01 --end 2026-11-07 --entity flows   # a range, as one run
klaviyo-pipeline ui                    # dagster dev on the same instance, warehouse and source
klaviyo-pipeline plan-stats --start 2025-12-01   # report calls a statistics backfill needs (sends none)
klaviyo-pipeline migrate               # apply pending warehouse migrations
klaviyo-pipeline check                 # does the API key have every scope the assets need?
klaviyo-pipeline worker                # a Celery worker (KLAVIYO_EXECUTOR=celery runs spread over workers)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from pipelines.environment import PROJECT_ROOT, prepared
from pipelines.webhooks import add_webhook_commands
from resources.catalogue import ALL_ENTITIES, CATALOGUE, nested_under


def _print_table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*(str(x) for x in row)))


def summary(warehouse_url: str) -> list[tuple]:
    """Live rows per table (the repository's count) and each entity's sync status."""
    import datetime as dt

    from assets.transform import DERIVED_TABLES, INCLUDED_SHAPES
    from resources.reports import FAMILIES
    from resources.warehouse import Repository, Warehouse
    from resources.warehouse import queries as q

    warehouse = Warehouse(url=warehouse_url)
    rows = []
    try:
        with warehouse.engine.connect() as conn:
            status = q.sync_statuses(conn)
            used = q.report_requests_on(conn, dt.datetime.now(dt.UTC).date())
        for entity in ALL_ENTITIES:
            entry, s = CATALOGUE[entity], status.get(entity)
            watermark = s.watermark.strftime("%Y-%m-%d %H:%M:%S") if s and s.watermark else "-"
            count = Repository(warehouse, entry.table).count()
            rows.append((entry.table, count, s.status if s else "never_run", watermark))
            for resource_type in entry.included_tables:  # e.g. campaign messages, loaded with them
                included = INCLUDED_SHAPES[resource_type].table
                rows.append((included, Repository(warehouse, included).count(), f"with {entity}", "-"))
            for name in entry.derived_tables:  # e.g. campaign audiences, from their attributes
                derived = DERIVED_TABLES[name].table
                rows.append((derived, Repository(warehouse, derived).count(), f"with {entity}", "-"))
        for family in FAMILIES.values():
            count = Repository(warehouse, family.table).count()
            rows.append((family.table, count, "report", f"{used} report requests today"))
    finally:
        warehouse.dispose()
    return rows


class UsageError(Exception):
    """Input the command refuses before it starts anything: said in one line, exit status 2."""


def partition_range(start: str | None, end: str | None) -> tuple[str, str]:
    """The --start/--end days of a sync, checked against the daily partitions (KLAVIYO_START_DATE to today)."""
    import datetime as dt

    from resources import settings

    first = dt.date.fromisoformat(settings.start_date())
    last = dt.datetime.now(dt.UTC).date()  # the live partition
    days = {}
    for flag, value in (("--start", start), ("--end", end)):
        if value is None:
            continue
        try:
            days[flag] = dt.date.fromisoformat(value)
        except ValueError:
            raise UsageError(
                f"{flag} {value!r} is not a date: give YYYY-MM-DD, from {first} to {last}"
            ) from None
    for flag, day in days.items():
        if not first <= day <= last:
            raise UsageError(
                f"{flag} {day} is outside the partitions: from {first} (KLAVIYO_START_DATE) to {last} (today, UTC)"
            )
    lo, hi = days.get("--start", first), days.get("--end", last)
    if lo > hi:
        raise UsageError(f"--start {lo} is after --end {hi}: the range would be empty")
    return lo.isoformat(), hi.isoformat()


def _reachable_warehouse(url: str):
    """The warehouse, migrated; a server that does not answer is a one-line error."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from resources.warehouse import Warehouse

    warehouse = Warehouse(url=url)
    try:
        applied = warehouse.migrate()
    except OperationalError as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[-1] if exc.orig else "no answer"
        raise UsageError(f"cannot reach the warehouse at {shown} (WAREHOUSE_URL): {reason}") from None
    finally:
        warehouse.dispose()
    print(f"migrations: {', '.join(applied) if applied else 'up to date'}")


def _readable_account(env) -> None:
    """The API key is accepted (one request); a refused key is a one-line error before any run starts."""
    from pipelines.environment import command_client
    from resources.klaviyo import KlaviyoApiError

    client = command_client(env)
    try:
        account = client.account()
    except KlaviyoApiError as exc:
        if exc.unauthorized:
            raise UsageError(str(exc)) from None
        raise
    finally:
        client.close()
    print(f"account: {account.id} (time zone {account.timezone})")


def _repository_label() -> str:
    """The tag value Dagster's UI files a job's runs under: the repository of workspace.yaml's code location
    (`Definitions` make one repository, `__repository__`). A run started here then appears under its job."""
    import yaml

    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    return f"__repository__@{workspace['load_from'][0]['python_module']['location_name']}"


def _execute(job, instance, run_config: dict, tags: dict, assets: set | None, checks: set):
    """One run of (a subset of) klaviyo_full_sync: in this process, or with KLAVIYO_EXECUTOR=celery on the
    Celery workers (the job then reconstructed from pipelines.definitions in each worker)."""
    import dagster as dg

    from pipelines import distributed

    if not distributed.enabled():
        subset = job.get_subset(asset_selection=assets, asset_check_selection=checks)
        return subset.execute_in_process(
            instance=instance, run_config=run_config, tags=tags, raise_on_error=False
        )  # fmt: skip
    from pipelines.definitions import reconstructable_full_sync

    subset = dg.reconstructable(reconstructable_full_sync).get_subset(
        asset_selection=assets, asset_check_selection=checks
    )
    return dg.execute_job(subset, instance=instance, run_config=run_config, tags=tags, raise_on_error=False)


def cmd_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    start, end = partition_range(args.start, args.end)
    with prepared() as env:
        _reachable_warehouse(env.warehouse_url)
        _readable_account(env)

        from pipelines.definitions import defs
        from pipelines.run_launcher import PID_TAG

        entities = args.entity or [*ALL_ENTITIES, "stats"]
        # An entity's sync also runs what is nested under it (flows: their messages), as its job does.
        entities = list(dict.fromkeys(x for e in entities for x in (e, *nested_under(e))))
        selection = [dg.AssetKey(["klaviyo", e]) for e in entities if e != "stats"]
        if "stats" in entities:
            from assets.bi_views import VIEWS
            from assets.stats import STATS_KEYS

            selection += [*STATS_KEYS.values(), dg.AssetKey(["klaviyo", "entity_summaries"])]
            selection += [view.key for view in VIEWS]
        run_config: dict = {
            "loggers": {"console": {"config": {"log_level": os.environ.get("KLAVIYO_LOG_LEVEL", "INFO")}}}
        }
        if args.full_refresh:
            run_config["ops"] = {
                f"klaviyo__{e}": {"config": {"full_refresh": True}} for e in entities if e != "stats"
            }
            if "stats" in entities:
                run_config["ops"]["klaviyo_stats"] = {"config": {"full_refresh": True}}
        print(f"syncing {', '.join(entities)} for {start} .. {end} (one run) on instance {env.dagster_home}")
        began = time.monotonic()
        job = defs.resolve_job_def("klaviyo_full_sync")
        # Filed under the job in the UI; the asset checks run after the sync, as a run of their own: they check
        # whole tables, and inside a partitioned run Dagster would plan each check once per partition.
        tags = {
            "klaviyo/trigger": "cli",
            ".dagster/repository": _repository_label(),
            PID_TAG: str(os.getpid()),
        }
        checks = {k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key in set(selection)}
        instance = dg.DagsterInstance.get()
        range_tags = {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}
        try:
            result = _execute(
                job, instance, run_config, {**tags, **range_tags}, set(selection), set()
            )  # fmt: skip
            synced_in = time.monotonic() - began
            checked = None
            if result.success and checks:
                checked = _execute(job, instance, {"loggers": run_config["loggers"]}, tags, None, checks)
        finally:
            instance.dispose()
        print()
        print(f"run {result.run_id}: {'succeeded' if result.success else 'FAILED'} in {synced_in:.1f} s")
        if checked is not None:
            evaluations = checked.get_asset_check_evaluations()
            failed = sorted(e.asset_check_key.to_user_string() for e in evaluations if not e.passed)
            print(
                f"checks (run {checked.run_id}): {len(evaluations) - len(failed)} passed, {len(failed)} failed"
                + (f": {', '.join(failed)}" if failed else "")
                + f" in {time.monotonic() - began - synced_in:.1f} s"
            )
        _print_table(summary(env.warehouse_url), ("table", "rows", "status", "watermark"))
        for run in (result, checked):
            if run is None or run.success:
                continue
            for event in run.all_events:
                if event.is_failure and event.event_specific_data is not None:
                    error = getattr(event.event_specific_data, "error", None)
                    if error is not None:
                        print(f"\n{event.step_key}: {error.message.strip()}", file=sys.stderr)
        return 0 if result.success and (checked is None or checked.success) else 1


def cmd_ui(args: argparse.Namespace) -> int:
    import dagster as dg

    with prepared() as env:
        print(f"DAGSTER_HOME={env.dagster_home}")
        # The instance's storage made here, once: `dagster dev` starts its webserver and daemon at the same
        # time, and on a new instance both would race to create the same tables.
        with dg.DagsterInstance.get():
            pass
        cmd = [
            sys.executable,
            "-m",
            "dagster",
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-p",
            str(args.port),
        ]
        # Own process group, SIGINT restored: dagster dev then stops cleanly with the group.
        # `dagster dev` says it is superseded by `dg dev` (a separate package); expected, so not shown.
        # (By its message and a builtin category: a filter naming Dagster's own warning class makes every
        # child Python process complain that it cannot import it at startup.)
        quiet = "ignore:Function `dev_command` is superseded:FutureWarning"
        env = {
            **os.environ,
            "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet])),
        }
        proc = subprocess.Popen(
            cmd,
            cwd=PROJECT_ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                return proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                return 1


def cmd_plan_stats(args: argparse.Namespace) -> int:
    """How many report calls the statistics of a range need (nothing is sent but the account lookup)."""
    import datetime as dt

    with prepared() as env:
        from assets.report_loading import StatsRequest, plan
        from resources import settings
        from resources.klaviyo import KlaviyoResource
        from resources.reports import FAMILIES
        from resources.warehouse import Warehouse
        from resources.warehouse.ledger import ReportLedger

        warehouse = Warehouse(url=env.warehouse_url)
        warehouse.migrate()
        today = dt.datetime.now(dt.UTC).date()
        first = dt.date.fromisoformat(args.start or settings.start_date())
        last = dt.date.fromisoformat(args.end) if args.end else today
        account = KlaviyoResource(
            api_key=os.environ["KLAVIYO_API_KEY"],
            base_url=env.klaviyo_base_url,
            revision=settings.revision(),
            rate_time_scale=settings.rate_time_scale(),
        ).account_id()
        request = StatsRequest(list(FAMILIES), first, last, args.lookback_days)
        calls = plan(request, warehouse, account, dt.datetime.now(dt.UTC))
        ledger = ReportLedger(warehouse.engine, account, quota=args.daily_quota)
        total, left = sum(len(c) for c in calls.values()), ledger.remaining()
        _print_table(
            [(name, len(c), ", ".join(f"{x.start}..{x.end}" for x in c) or "-") for name, c in calls.items()],
            ("family", "calls", "windows"),
        )
        print(f"\n{total} report calls for {first} .. {last}; {left} of {ledger.quota} left today: "
              + ("fits" if total <= left else f"{total - left} wait for the next day's quota"))  # fmt: skip
        warehouse.dispose()
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """One smallest request per endpoint the assets read; a table of scopes, non-zero exit if one is missing."""
    with prepared(warehouse=False) as env:
        from assets.access import check_access
        from pipelines.environment import command_client

        client = command_client(env)
        try:
            results = check_access(client)
        finally:
            client.close()
        rows = [(r.requirement.asset, r.requirement.endpoint, r.requirement.scope, r.detail) for r in results]
        _print_table(rows, ("asset", "endpoint", "scope", "result"))
        missing = sorted({r.requirement.scope for r in results if not r.ok})
        if missing:
            print(f"\nthe key cannot read what the assets need: missing or refused {', '.join(missing)}")
            return 1
        print(
            f"\nthe key has every scope the assets need ({len({r.requirement.scope for r in results})} scopes)"
        )
        return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker that takes the steps of runs started with KLAVIYO_EXECUTOR=celery."""
    from sqlalchemy.engine import make_url

    from pipelines import distributed
    from pipelines.environment import state_dir

    shared = ("KLAVIYO_API_KEY", "WAREHOUSE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME")
    missing = [name for name in shared if not os.environ.get(name)]
    if missing:
        raise UsageError(
            f"a worker runs steps against the runs' own account, warehouse and Dagster instance: set "
            f"{', '.join(missing)} as where the runs are launched (no embedded defaults for a worker)"
        )
    settings = distributed.celery_settings()
    argv, env = distributed.worker_command(state_dir() / "celery" / args.name, args.name, args.concurrency)
    broker = make_url(settings.broker.replace("pyamqp://", "amqp://", 1)).render_as_string(hide_password=True)
    print(f"worker {args.name}: {args.concurrency} step(s) at once from queue {settings.queue!r} at {broker}")
    sys.stdout.flush()
    os.chdir(PROJECT_ROOT)
    os.execve(
        argv[0], argv, env
    )  # the worker is Celery itself: signals (TERM: warm shutdown) reach it as sent


def cmd_migrate(args: argparse.Namespace) -> int:
    with prepared() as env:
        from resources.warehouse import Warehouse

        applied = Warehouse(url=env.warehouse_url).migrate()
        print(f"applied: {', '.join(applied)}" if applied else "up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="klaviyo-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    sync = sub.add_parser("sync", help="sync entities over a range of daily partitions, as one run")
    sync.add_argument(
        "--start", help="first partition (YYYY-MM-DD); default: the first one (KLAVIYO_START_DATE)"
    )
    sync.add_argument("--end", help="last partition (YYYY-MM-DD); default: today")
    sync.add_argument(
        "--entity",
        action="append",
        choices=[*ALL_ENTITIES, "stats"],
        help="only these entities (repeatable; 'stats': report statistics and summary columns)",
    )
    sync.add_argument("--full-refresh", action="store_true", help="ignore watermarks")
    sync.set_defaults(func=cmd_sync)
    ui = sub.add_parser("ui", help="open the Dagster UI on the same instance, warehouse and source")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    stats = sub.add_parser(
        "plan-stats", help="how many report calls a range of statistics needs (sends none)"
    )
    stats.add_argument("--start", help="first day (YYYY-MM-DD); default: KLAVIYO_START_DATE")
    stats.add_argument("--end", help="last day (YYYY-MM-DD); default: today")
    stats.add_argument("--lookback-days", type=int, default=7)
    stats.add_argument("--daily-quota", type=int, default=225, help="report requests a day (Klaviyo: 225)")
    stats.set_defaults(func=cmd_plan_stats)
    worker = sub.add_parser(
        "worker", help="start a Celery worker for runs started with KLAVIYO_EXECUTOR=celery (any machine)"
    )
    worker.add_argument("--name", default="klaviyo", help="the worker's name (its host is appended)")
    worker.add_argument("--concurrency", type=int, default=2, help="steps it runs at once (processes)")
    worker.set_defaults(func=cmd_worker)
    mig = sub.add_parser("migrate", help="apply pending warehouse migrations")
    mig.set_defaults(func=cmd_migrate)
    check = sub.add_parser(
        "check", help="check that the API key has every read scope the assets need (one small request each)"
    )
    check.set_defaults(func=cmd_check)
    add_webhook_commands(sub)  # webhooks serve|register|list|delete (pipelines/webhooks.py)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        args = parser.parse_args(["sync", *(argv or [])])
    try:
        status = args.func(args)
    except UsageError as exc:
        print(f"klaviyo-pipeline {args.command or 'sync'}: {exc}", file=sys.stderr)
        status = 2
    sys.exit(status)


if __name__ == "__main__":
    main()
