"""Schedules: frequent incremental runs of today's partition, a daily settle run of yesterday's, a weekly deep
re-read of recent events, a daily deletion reconciliation, and a weekly one of profiles."""

import datetime as dt

import dagster as dg

from assets.partitions import MULTI_ACCOUNT, account_partitions, account_tags, partition_key
from pipelines.jobs import all_entities_job, entity_jobs, reconcile_job
from resources import settings
from resources.accounts import Account, read_accounts
from resources.catalogue import ALL_ENTITIES, MEMBER_ENTITIES


def _day(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d")


def live_accounts(context: dg.ScheduleEvaluationContext | dg.SensorEvaluationContext) -> list[Account | None]:
    """The accounts runs are requested for: [None] with one account; else each declared account whose
    partition exists (the bootstrap sensor adds a new account's partition with its history run)."""
    if not MULTI_ACCOUNT:
        return [None]
    known = set(context.instance.get_dynamic_partitions(account_partitions.name))
    return [a for a in read_accounts() if a.name in known]


def day_requests(
    context: dg.ScheduleEvaluationContext, day: str, tags: dict, **request
) -> list[dg.RunRequest]:
    """One run of a day's partition per account (its own run: one account's failure or backfill never holds
    up another's), tagged with the account for the run queue's per-account limits."""
    return [
        dg.RunRequest(
            partition_key=partition_key(a, day),
            tags=tags | account_tags(a),
            **{k: f"{v}:{a.name}" if k == "run_key" and a and v else v for k, v in request.items()},
        )
        for a in live_accounts(context)
    ]


@dg.schedule(
    job=all_entities_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every 15 minutes: today's partition, incremental from each entity's watermark.",
)
def klaviyo_incremental_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    key = _day(context.scheduled_execution_time)
    return day_requests(context, key, {"klaviyo/schedule": "incremental"})


@dg.schedule(
    job=all_entities_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 02:30 UTC: re-read all of yesterday (late updates settle), full window.",
)
def klaviyo_settle_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    key = _day(context.scheduled_execution_time - dt.timedelta(days=1))
    # Members are not read again in full (a million-member segment is 10,000 requests): their own daily full
    # listing (listing_every_hours) finds who left, and a settle run reads them incrementally.
    settled = [e for e in ALL_ENTITIES if e not in MEMBER_ENTITIES]
    config = {"ops": {f"klaviyo__{e}": {"config": {"full_refresh": True}} for e in settled}}
    return day_requests(context, key, {"klaviyo/schedule": "settle"}, run_config=config)


@dg.schedule(
    job=entity_jobs["events"],
    cron_schedule=settings.events_reread_cron(),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly (KLAVIYO_EVENTS_REREAD_CRON): today's events partition, re-reading the last 30 days "
    "(run config reread_days; KLAVIYO_EVENTS_REREAD_DAYS), so events Klaviyo received late with an older "
    "datetime land; events already stored are left as they are.",
)
def klaviyo_events_reread_schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
    key = _day(context.scheduled_execution_time)
    config = {"ops": {"klaviyo__events": {"config": {"reread_days": settings.events_reread_days()}}}}
    return day_requests(context, key, {"klaviyo/schedule": "events-reread"}, run_config=config)


klaviyo_reconcile_schedule = dg.ScheduleDefinition(
    name="klaviyo_reconcile_schedule",
    job=reconcile_job,
    cron_schedule="15 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily at 03:15 UTC: one full id listing per small entity; rows Klaviyo no longer has get deleted_at.",
)


klaviyo_reconcile_profiles_schedule = dg.ScheduleDefinition(
    name="klaviyo_reconcile_profiles_schedule",
    job=reconcile_job,
    cron_schedule=settings.profiles_reconcile_cron(),
    execution_timezone="UTC",
    run_config={"ops": {"klaviyo__deletions": {"config": {"entities": ["profiles"]}}}},
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Weekly (KLAVIYO_PROFILES_RECONCILE_CRON, default Sundays 03:45 UTC): every profile id (a listing of "
    "ids alone, 100 a page: about 14 minutes a million profiles); profiles Klaviyo no longer lists get deleted_at.",
)
