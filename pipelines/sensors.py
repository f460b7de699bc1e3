"""Sensors: run when Klaviyo changed, bootstrap empty tables, record run failures in the status table, catch
up on report statistics deferred by the daily quota, and the automation of the statistics assets."""

import datetime as dt
import json
import time

import dagster as dg

from assets.dependents import loaded_with
from assets.partitions import (
    MULTI_ACCOUNT,
    account_days,
    account_partitions,
    account_range_tags,
    account_tags,
    partition_key,
)
from assets.report_loading import StatsRequest, plan
from assets.stats import StatsConfig
from pipelines.jobs import entity_jobs, stats_job
from pipelines.schedules import live_accounts
from resources.accounts import Account, AccountsError, read_accounts
from resources.calendar import AccountCalendar
from resources.catalogue import CHANGE_TRACKED, MEMBER_ENTITIES, SNAPSHOT_ENTITIES
from resources.klaviyo import KlaviyoApiError, KlaviyoResource
from resources.reports import FAMILIES
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse import status as sync_status
from resources.warehouse.ledger import ReportLedger

UTC = dt.UTC
RETRY_AFTER_SECONDS = 1800  # re-request a change (or a bootstrap) still not loaded after this long


def _skip(context: dg.SensorEvaluationContext, reason: str) -> dg.SkipReason:
    """Skip the tick, saying why in the tick's log as well as in its skip reason."""
    context.log.info(f"skipped: {reason}")
    return dg.SkipReason(reason)


def _today() -> str:
    return dt.datetime.now(UTC).strftime("%Y-%m-%d")


def _name(account: Account | None) -> str:
    return account.name if account is not None else ""


def _slot(account: Account | None, entity: str) -> str:
    """An entity's key in a sensor's cursor and run keys (the account's name before it, with several)."""
    return f"{account.name}:{entity}" if account is not None else entity


@dg.sensor(
    jobs=[entity_jobs[e] for e in CHANGE_TRACKED],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="One cheap request per entity pass (newest update first), per account; a run of today's "
    "partition only for entities that changed since their watermark (an entity's job also runs what is nested "
    "under it: flows' messages, forms' versions).",
)
def klaviyo_change_sensor(
    context: dg.SensorEvaluationContext, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    states: dict = cursor.get("accounts", {})
    warehouse.require_migrated()
    requests, calls, refused = [], 0, []
    now = time.time()
    for acct in live_accounts(context):
        state = states.setdefault(_name(acct), {})
        seen: dict = state.setdefault("seen", {})
        try:
            client = klaviyo.fresh_client(acct)
        except (KlaviyoApiError, AccountsError) as exc:  # one account's key: the others are still watched
            refused.append(f"{_name(acct) or 'account'}: {exc}")
            continue
        try:
            account = state.get("account_id") or client.account_id()
            state["account_id"] = account
            for entity in CHANGE_TRACKED:
                newest = client.newest_update(entity)
                if newest is None:
                    continue
                mark = sync_status.watermark(warehouse.engine, account, entity)
                if mark is not None and newest <= mark:
                    continue
                last = seen.get(entity, {})
                if last.get("newest") == newest.isoformat() and now - last.get("at", 0) < RETRY_AFTER_SECONDS:
                    continue  # already asked for this change; give that run time to land
                attempt = last.get("attempt", 0) + 1 if last.get("newest") == newest.isoformat() else 1
                seen[entity] = {"newest": newest.isoformat(), "at": now, "attempt": attempt}
                requests.append(
                    dg.RunRequest(
                        job_name=entity_jobs[entity].name,
                        partition_key=partition_key(acct, _today()),
                        run_key=f"change:{_slot(acct, entity)}:{newest.isoformat()}:{attempt}",
                        tags={"klaviyo/trigger": "change", "klaviyo/newest": newest.isoformat()}
                        | account_tags(acct),
                    )
                )
            calls += client.stats.totals().calls
        finally:
            client.close()
    for line in refused:
        context.log.error(f"not watched: {line}")
    new_cursor = json.dumps({"accounts": states}, sort_keys=True)
    if not requests:
        context.update_cursor(new_cursor)
        return _skip(context, f"no entity changed since its watermark ({calls} requests)")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


@dg.sensor(
    jobs=[entity_jobs[e] for e in CHANGE_TRACKED + SNAPSHOT_ENTITIES + MEMBER_ENTITIES],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="When an entity's table is empty for an account (or one loaded with it: its included, derived "
    "and nested tables), ask for its whole history (one run over all its partitions). With an accounts file, "
    "a newly declared account gets its partition and its history here.",
)
def klaviyo_bootstrap_sensor(
    context: dg.SensorEvaluationContext, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    ids: dict = cursor.setdefault("account_ids", {})
    asked: dict = cursor.setdefault("asked", {})
    warehouse.require_migrated()
    now = time.time()
    requests = []
    new: list[str] = []
    accounts: list[Account | None] = [None]
    if MULTI_ACCOUNT:
        known = set(context.instance.get_dynamic_partitions(account_partitions.name))
        accounts = list(read_accounts())
        new = [a.name for a in accounts if a.name not in known]
    with warehouse.engine.connect() as conn:
        for acct in accounts:
            account_id = None
            if acct is not None and acct.name not in new:
                # The account's id, to look at its own rows (one request, once: kept in the cursor).
                if acct.name not in ids:
                    try:
                        ids[acct.name] = klaviyo.account_id(acct)
                    except (KlaviyoApiError, AccountsError) as exc:
                        context.log.error(f"account {acct.name}: {exc}")
                        continue
                account_id = ids[acct.name]
            first, today = account_days(acct, _today())
            fresh = acct is not None and acct.name in new
            for entity in CHANGE_TRACKED + SNAPSHOT_ENTITIES + MEMBER_ENTITIES:  # members: unpartitioned
                # The entity's table, and those loaded with it: its included resources, derived rows and nested
                # entities (e.g. campaign messages, or flow messages, empty after an upgrade that added them).
                if not fresh and all(q.has_rows(conn, t, account_id) for t in loaded_with(entity)):
                    continue
                slot = _slot(acct, entity)
                last = asked.get(slot, {})
                if now - last.get("at", 0) < RETRY_AFTER_SECONDS:
                    continue
                attempt = last.get("attempt", 0) + 1
                asked[slot] = {"at": now, "attempt": attempt}
                tags = {"klaviyo/trigger": "bootstrap"} | account_tags(acct)
                if entity in CHANGE_TRACKED:
                    tags |= account_range_tags(acct, first, today)
                requests.append(
                    dg.RunRequest(
                        job_name=entity_jobs[entity].name, run_key=f"bootstrap:{slot}:{attempt}", tags=tags
                    )
                )
    new_cursor = json.dumps(cursor, sort_keys=True)
    if not requests and not new:
        context.update_cursor(new_cursor)
        return _skip(context, "every entity table has data (or its bootstrap run is under way)")
    if new:
        context.log.info(f"new accounts: {', '.join(new)}: their partitions and history runs are requested")
    return dg.SensorResult(
        run_requests=requests,
        cursor=new_cursor,
        dynamic_partitions_requests=[dg.AddDynamicPartitionsRequest(account_partitions.name, new)]
        if new
        else [],
    )


@dg.run_failure_sensor(
    name="klaviyo_run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks the entities a failed run left under way as interrupted in klaviyo_sync_status (the run "
    "died outside the asset: a killed process, a lost worker found by run monitoring, a canceled run).",
)
def klaviyo_run_failure_sensor(context: dg.RunFailureSensorContext, warehouse: Warehouse) -> None:
    message = context.failure_event.message or "run failed"
    count = sync_status.mark_run_interrupted(warehouse.engine, context.dagster_run.run_id, message[:4000])
    context.log.info(f"marked {count} entity sync(s) of run {context.dagster_run.run_id} as interrupted")


@dg.sensor(
    job=stats_job,
    minimum_interval_seconds=900,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Asks again for report statistics days that are still missing (deferred for lack of the daily "
    "report quota), once the quota has room; skips, saying why, while it has none.",
)
def klaviyo_stats_catchup_sensor(
    context: dg.SensorEvaluationContext, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    warehouse.require_migrated()
    requests, skipped = [], []
    for acct in live_accounts(context):
        try:
            outcome = _catchup(acct, klaviyo, warehouse)
        except (KlaviyoApiError, AccountsError) as exc:
            skipped.append(f"{_name(acct) or 'account'}: {exc}")
            continue
        if isinstance(outcome, str):
            skipped.append(f"{acct.name}: {outcome}" if acct is not None else outcome)
        else:
            requests.append(outcome)
    if not requests:
        return _skip(context, "; ".join(skipped) or "no account")
    for line in skipped:
        context.log.info(line)
    return dg.SensorResult(run_requests=requests)


def _catchup(acct: Account | None, klaviyo: KlaviyoResource, warehouse: Warehouse) -> dg.RunRequest | str:
    """One account's catch-up run, or why there is none."""
    first = dt.date.fromisoformat(account_days(acct, _today())[0])
    info = klaviyo.account(acct)
    account, calendar = info.id, AccountCalendar(info.timezone)
    now = dt.datetime.now(UTC)
    today = calendar.today(now)
    # The statistics asset's own plan, settling included, over the days its automation no longer re-reads
    # (before its lookback; campaigns: before their refresh period): days never loaded, deferred for lack of
    # quota, or read before they settled.
    config = StatsConfig()
    reach = {"campaign": config.campaign_refresh_days}
    planned = {}
    for name in FAMILIES:
        request = StatsRequest(
            families=[name],
            first_day=first,
            last_day=today - dt.timedelta(days=reach.get(name, config.lookback_days) + 1),
            lookback_days=config.lookback_days,
            campaign_refresh_days=config.campaign_refresh_days,
        )
        if request.last_day >= first:
            planned.update({n: c for n, c in plan(request, warehouse, account, now, calendar).items() if c})
    if not planned:
        return "every day of every statistics family before the automation's lookback is loaded and settled"
    calls = sum(len(c) for c in planned.values())
    summary = ", ".join(f"{n} {sum(len(c.days) for c in cs)} days" for n, cs in planned.items())
    ledger = ReportLedger(warehouse.engine, account, calendar=calendar)
    left = ledger.remaining()
    if left == 0:
        used, closed = ledger.usage()
        why = "Klaviyo closed the day (429)" if closed else f"{used}/{ledger.quota} requests used"
        return (
            f"report quota for {today} is spent ({why}); to load: {summary} ({calls} calls) wait for 00:00 "
            f"{calendar.timezone} ({ledger.resets_at().astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
        )
    start = min(c.start for cs in planned.values() for c in cs)
    end = max(c.days[-1] for cs in planned.values() for c in cs)
    return dg.RunRequest(
        run_key=f"stats-catchup:{_slot(acct, str(today))}:{start}:{end}:{calls}:{left}",
        tags={
            **account_range_tags(acct, start.isoformat(), end.isoformat()),
            "klaviyo/trigger": "stats-catchup",
            "klaviyo/report_calls_planned": str(calls),
        },
    )


klaviyo_stats_automation = dg.AutomationConditionSensorDefinition(
    "klaviyo_stats_automation",
    target=dg.AssetSelection.groups("klaviyo_stats", "klaviyo_analytics"),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes the statistics after their upstream entities update (on the stats cron), and "
    "the summary columns after the statistics.",
)
