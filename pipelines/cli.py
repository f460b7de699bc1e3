"""`klaviyo-pipeline`: the main job in one command, the UI on the same instance, migrations, the simulator.

klaviyo-pipeline sync                  # full sync of every entity and the report statistics
klaviyo-pipeline sync --start 2026-11-01 --end 2026-11-07 --entity flows   # a range, as one run
klaviyo-pipeline ui                    # dagster dev on the same instance, warehouse and source
klaviyo-pipeline plan-stats --start 2025-12-01   # report calls a statistics backfill needs (sends none)
klaviyo-pipeline migrate               # apply pending warehouse migrations
klaviyo-pipeline check                 # does the API key have every scope the assets need?
klaviyo-pipeline accounts add acme --key-env KLAVIYO_KEY_ACME   # declare an account (KLAVIYO_ACCOUNTS_FILE)
klaviyo-pipeline sync --account acme   # one declared account (default: every one, a run each)
klaviyo-pipeline worker                # a Celery worker (KLAVIYO_EXECUTOR=celery runs spread over workers)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from pipelines.environment import PROJECT_ROOT, prepared, start_group, stop_group
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


def account_summary(warehouse_url: str, ids: dict[str, str]) -> list[tuple]:
    """Per declared account (name → id): entities whose last sync succeeded, those that failed, the latest
    success."""
    from resources.warehouse import Warehouse
    from resources.warehouse import queries as q

    warehouse = Warehouse(url=warehouse_url)
    try:
        with warehouse.engine.connect() as conn:
            status = q.status_by_account(conn)
    finally:
        warehouse.dispose()
    rows = []
    for name, account_id in ids.items():
        s = status.get(account_id)
        when = s.last_success_at.strftime("%Y-%m-%d %H:%M:%S") if s and s.last_success_at else "-"
        rows.append(
            (name, account_id, s.succeeded if s else 0, ", ".join(s.failed) if s and s.failed else "-", when)
        )
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


def _readable_account(env, account=None) -> str:
    """The API key is accepted (one request); a refused key is a one-line error before any run starts."""
    from pipelines.environment import command_client
    from resources.klaviyo import KlaviyoApiError

    client = command_client(env, account)
    label = f"account {account.name}" if account is not None else "account"
    try:
        info = client.account()
    except KlaviyoApiError as exc:
        if exc.unauthorized:
            raise UsageError(f"{label}: {exc}") from None
        raise
    finally:
        client.close()
    print(f"{label}: {info.id} (time zone {info.timezone})")
    return info.id


def _chosen_accounts(names: list[str] | None) -> list:
    """The accounts a command covers: [None] with one account; else those named (default: every declared one)."""
    from resources.accounts import AccountsError, accounts_named, multi_account, read_accounts

    if not multi_account():
        if names:
            raise UsageError("--account needs an accounts file (KLAVIYO_ACCOUNTS_FILE); see `accounts add`")
        return [None]
    try:
        accounts = accounts_named(names) if names else read_accounts()
    except AccountsError as exc:
        raise UsageError(str(exc)) from None
    if not accounts:
        raise UsageError("no account is declared yet: add one with `klaviyo-pipeline accounts add`")
    return accounts


def cmd_sync(args: argparse.Namespace) -> int:
    import dagster as dg

    start, end = partition_range(args.start, args.end)
    accounts = _chosen_accounts(args.account)
    with prepared() as env:
        _reachable_warehouse(env.warehouse_url)
        ids = {account.name if account else "": _readable_account(env, account) for account in accounts}

        from assets.declaration import API_POOL
        from assets.partitions import ACCOUNT_TAG, account_partitions, account_range_tags
        from pipelines.definitions import defs
        from pipelines.run_launcher import PID_TAG
        from pipelines.runs import JOB_NAME, execute, pool_ready, pooled

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
        named = "" if accounts == [None] else f" of {', '.join(a.name for a in accounts)}"
        print(
            f"syncing {', '.join(entities)}{named} for {start} .. {end} "
            f"({'one run per account' if named else 'one run'}) on {env.dagster_home}"
        )
        began = time.monotonic()
        job = defs.resolve_job_def(JOB_NAME)
        # The asset checks run after the sync, as a run of their own: they check whole tables, and inside a
        # partitioned run Dagster would plan each check once per partition.
        tags = {"klaviyo/trigger": "cli", PID_TAG: str(os.getpid())}
        checks = {k for k in job.asset_layer.asset_graph.asset_check_keys if k.asset_key in set(selection)}
        instance = pooled(dg.DagsterInstance.get())
        results = []
        try:
            pool_ready(instance, API_POOL)
            if accounts != [None]:  # each account's partition exists before its run (else the sensor adds it)
                known = set(instance.get_dynamic_partitions(account_partitions.name))
                new = [a.name for a in accounts if a.name not in known]
                instance.add_dynamic_partitions(account_partitions.name, new)
            for account in accounts:
                own = account.start_date if account is not None and account.start_date else None
                first = max(start, own) if own else start
                run_tags = {**tags, **account_range_tags(account, first, max(first, end))}
                result = execute(instance, run_config, run_tags, set(selection), set())
                results.append((account, result))
            synced_in = time.monotonic() - began
            checked = None
            if all(r.success for _, r in results) and checks:
                check_tags = tags | (
                    {ACCOUNT_TAG: ",".join(a.name for a in accounts)} if accounts != [None] else {}
                )
                checked = execute(instance, {"loggers": run_config["loggers"]}, check_tags, None, checks)
        finally:
            instance.dispose()
        print()
        for account, result in results:
            who = f"account {account.name}: " if account is not None else ""
            print(f"{who}run {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
        print(f"synced in {synced_in:.1f} s")
        if checked is not None:
            evaluations = checked.get_asset_check_evaluations()
            failed = sorted(e.asset_check_key.to_user_string() for e in evaluations if not e.passed)
            print(
                f"checks (run {checked.run_id}): {len(evaluations) - len(failed)} passed, {len(failed)} failed"
                + (f": {', '.join(failed)}" if failed else "")
                + f" in {time.monotonic() - began - synced_in:.1f} s"
            )
        _print_table(summary(env.warehouse_url), ("table", "rows", "status", "watermark"))
        if accounts != [None]:
            print()
            _print_table(
                account_summary(env.warehouse_url, ids), ("account", "id", "ok", "failed", "last success")
            )
        for run in [r for _, r in results] + [checked]:
            if run is None or run.success:
                continue
            for event in run.all_events:
                if event.is_failure and event.event_specific_data is not None:
                    error = getattr(event.event_specific_data, "error", None)
                    if error is not None:
                        print(f"\n{event.step_key}: {error.message.strip()}", file=sys.stderr)
        ok = all(r.success for _, r in results) and (checked is None or checked.success)
        return 0 if ok else 1


def cmd_accounts(args: argparse.Namespace) -> int:
    """accounts add NAME --key-env VAR [--start-date D] | accounts list"""
    from pathlib import Path

    from resources.accounts import (
        ACCOUNTS_FILE_ENV,
        Account,
        AccountsError,
        accounts_file,
        add_account,
        read_accounts,
    )

    path = Path(args.file) if args.file else accounts_file()
    if path is None:
        raise UsageError(f"set {ACCOUNTS_FILE_ENV} to the accounts file's path (or give --file)")
    try:
        if args.accounts_command == "add":
            if args.start_date:
                partition_range(args.start_date, None)  # a day of the partitions
            accounts = add_account(path, Account(args.name, args.key_env, args.start_date))
            print(f"{path}: {len(accounts)} account(s); {args.name} reads the key in ${args.key_env}")
            print(
                "its history starts with the bootstrap sensor, or now with `klaviyo-pipeline sync --account "
                f"{args.name}`"
            )
            return 0
        accounts = read_accounts(path)
    except AccountsError as exc:
        raise UsageError(str(exc)) from None
    rows = [
        (a.name, a.key_env, "set" if os.environ.get(a.key_env) else "NOT SET", a.start_date or "-")
        for a in accounts
    ]
    _print_table(rows, ("account", "key variable", "key", "start date"))
    return 0


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
        # `dagster dev` says it is superseded by `dg dev` (a separate package); expected, so not shown.
        # (By its message and a builtin category: a filter naming Dagster's own warning class makes every
        # child Python process complain that it cannot import it at startup.)
        quiet = "ignore:Function `dev_command` is superseded:FutureWarning"
        env = {
            **os.environ,
            "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet])),
        }
        proc = start_group(cmd, env)  # dagster dev then stops cleanly with its group
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return stop_group(proc, signal.SIGINT) or 1


def cmd_plan_stats(args: argparse.Namespace) -> int:
    """How many report calls the statistics of a range need (nothing is sent but the account lookup)."""
    import datetime as dt

    chosen = _chosen_accounts([args.account] if args.account else None)
    if len(chosen) > 1:
        raise UsageError("with several accounts, name one: --account NAME")
    chosen = chosen[0]
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
            api_key=os.environ.get("KLAVIYO_API_KEY", ""),
            base_url=env.klaviyo_base_url,
            revision=settings.revision(),
            rate_time_scale=settings.rate_time_scale(),
        ).account_id(chosen)
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
    accounts = _chosen_accounts(args.account)
    with prepared(warehouse=False) as env:
        from assets.access import check_access
        from pipelines.environment import command_client

        status = 0
        for account in accounts:
            if account is not None:
                print(f"\naccount {account.name} (key in ${account.key_env}):")
            client = command_client(env, account)
            try:
                results = check_access(client)
            finally:
                client.close()
            rows = [
                (r.requirement.asset, r.requirement.endpoint, r.requirement.scope, r.detail) for r in results
            ]
            _print_table(rows, ("asset", "endpoint", "scope", "result"))
            missing = sorted({r.requirement.scope for r in results if not r.ok})
            if missing:
                print(f"\nthe key cannot read what the assets need: missing or refused {', '.join(missing)}")
                status = 1
                continue
            scopes = len({r.requirement.scope for r in results})
            print(f"\nthe key has every scope the assets need ({scopes} scopes)")
        return status


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker that takes the steps of runs started with KLAVIYO_EXECUTOR=celery."""
    from sqlalchemy.engine import make_url

    from pipelines import distributed
    from pipelines.environment import state_dir
    from resources.accounts import AccountsError, multi_account, read_accounts

    try:  # each declared account's key variable, or the one key
        keys = [a.key_env for a in read_accounts()] if multi_account() else ["KLAVIYO_API_KEY"]
    except AccountsError as exc:
        raise UsageError(str(exc)) from None
    shared = (*keys, "WAREHOUSE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME")
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
    sync.add_argument(
        "--account", action="append", help="only this declared account (repeatable; default: every one)"
    )
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
    stats.add_argument("--account", help="the declared account (with an accounts file)")
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
    check.add_argument("--account", action="append", help="only this declared account (repeatable)")
    check.set_defaults(func=cmd_check)
    accounts = sub.add_parser(
        "accounts", help="declare and list the Klaviyo accounts (KLAVIYO_ACCOUNTS_FILE)"
    )
    accounts.add_argument("--file", help="the accounts file (default: KLAVIYO_ACCOUNTS_FILE)")
    accounts_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    add = accounts_sub.add_parser("add", help="declare an account (its key stays in the environment)")
    add.add_argument("name", help="lowercase letters, digits, '-' or '_' (its partition key)")
    add.add_argument("--key-env", required=True, help="the environment variable that holds its API key")
    add.add_argument("--start-date", help="first day of its history (YYYY-MM-DD; default KLAVIYO_START_DATE)")
    accounts_sub.add_parser("list", help="the declared accounts, and whether each key variable is set")
    accounts.set_defaults(func=cmd_accounts)
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
