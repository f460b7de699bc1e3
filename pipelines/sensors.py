"""Sensors: run when Klaviyo changed, bootstrap empty tables, record run failures in the status table, catch
up on report statistics deferred by the daily quota, and the automation of the statistics assets."""

import datetime as dt
import json
import time

import dagster as dg

from assets.dependents import loaded_with
from assets.partitions import daily_partitions
from assets.report_loading import StatsRequest, plan
from assets.stats import StatsConfig
from pipelines.jobs import entity_jobs, stats_job
from resources.calendar import AccountCalendar
from resources.catalogue import CHANGE_TRACKED, MEMBER_ENTITIES, SNAPSHOT_ENTITIES
from resources.klaviyo import KlaviyoResource
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


@dg.sensor(
    jobs=[entity_jobs[e] for e in CHANGE_TRACKED],
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="One cheap request per entity pass (newest update first); a run of today's partition only "
    "for entities that changed since their watermark (an entity's job also runs what is nested under it: "
    "flows' messages, forms' versions).",
)
def klaviyo_change_sensor(
    context: dg.SensorEvaluationContext, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    seen: dict = cursor.get("seen", {})
    warehouse.require_migrated()
    client = klaviyo.fresh_client()
    try:
        account = cursor.get("account_id") or client.account_id()
        requests = []
        now = time.time()
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
                    partition_key=_today(),
                    run_key=f"change:{entity}:{newest.isoformat()}:{attempt}",
                    tags={"klaviyo/trigger": "change", "klaviyo/newest": newest.isoformat()},
                )
            )
        calls = client.stats.totals().calls
    finally:
        client.close()
    new_cursor = json.dumps({"account_id": account, "seen": seen}, sort_keys=True)
    if not requests:
        context.update_cursor(new_cursor)
        return _skip(context, f"no entity changed since its watermark ({calls} requests)")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


@dg.sensor(
    jobs=[entity_jobs[e] for e in CHANGE_TRACKED + SNAPSHOT_ENTITIES + MEMBER_ENTITIES],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="When an entity's table is empty (or one loaded with it: its included, derived and nested "
    "tables), ask for its whole history (one run over all partitions).",
)
def klaviyo_bootstrap_sensor(
    context: dg.SensorEvaluationContext, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    warehouse.require_migrated()
    now = time.time()
    requests = []
    with warehouse.engine.connect() as conn:
        for entity in CHANGE_TRACKED + SNAPSHOT_ENTITIES + MEMBER_ENTITIES:  # members: unpartitioned
            # The entity's table, and those loaded with it: its included resources, derived rows and nested
            # entities (e.g. campaign messages, or flow messages, empty after an upgrade that added their table).
            if all(q.has_rows(conn, t) for t in loaded_with(entity)):
                continue
            last = cursor.get(entity, {})
            if now - last.get("at", 0) < RETRY_AFTER_SECONDS:
                continue
            attempt = last.get("attempt", 0) + 1
            cursor[entity] = {"at": now, "attempt": attempt}
            tags = {"klaviyo/trigger": "bootstrap"}
            if entity in CHANGE_TRACKED:
                tags |= {
                    "dagster/asset_partition_range_start": daily_partitions.get_first_partition_key(),
                    "dagster/asset_partition_range_end": _today(),
                }
            requests.append(
                dg.RunRequest(
                    job_name=entity_jobs[entity].name, run_key=f"bootstrap:{entity}:{attempt}", tags=tags
                )
            )
    new_cursor = json.dumps(cursor, sort_keys=True)
    if not requests:
        context.update_cursor(new_cursor)
        return _skip(context, "every entity table has data (or its bootstrap run is under way)")
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


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
) -> dg.RunRequest | dg.SkipReason:
    warehouse.require_migrated()
    first = dt.date.fromisoformat(daily_partitions.get_first_partition_key())
    info = klaviyo.account()
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
        return _skip(
            context,
            "every day of every statistics family before the automation's lookback is loaded and settled",
        )
    calls = sum(len(c) for c in planned.values())
    summary = ", ".join(f"{n} {sum(len(c.days) for c in cs)} days" for n, cs in planned.items())
    ledger = ReportLedger(warehouse.engine, account, calendar=calendar)
    left = ledger.remaining()
    if left == 0:
        used, closed = ledger.usage()
        why = "Klaviyo closed the day (429)" if closed else f"{used}/{ledger.quota} requests used"
        return _skip(
            context,
            f"report quota for {today} is spent ({why}); to load: {summary} ({calls} calls) wait for 00:00 "
            f"{calendar.timezone} ({ledger.resets_at().astimezone(UTC):%Y-%m-%d %H:%M} UTC)",
        )
    start = min(c.start for cs in planned.values() for c in cs)
    end = max(c.days[-1] for cs in planned.values() for c in cs)
    return dg.RunRequest(
        run_key=f"stats-catchup:{today}:{start}:{end}:{calls}:{left}",
        tags={
            "dagster/asset_partition_range_start": start.isoformat(),
            "dagster/asset_partition_range_end": end.isoformat(),
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
