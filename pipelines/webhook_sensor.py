"""The webhook drain's job and sensor: a run of klaviyo/webhook_events soon after events land in the inbox."""

from __future__ import annotations

import json
import time

import dagster as dg

from pipelines.sensors import _skip
from resources.warehouse import Warehouse, inbox

WEBHOOK_EVENTS_KEY = dg.AssetKey(["klaviyo", "webhook_events"])
ASK_AGAIN_SECONDS = 120  # the same pending events asked for again after this long (their run may have failed)
# Events younger than this are left to the receiver, which loads each delivery within a second of storing it
# (`webhooks serve --load`): a run is asked for only when they wait longer (the receiver runs --no-load, or
# could not load them).
GRACE_SECONDS = 10
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

webhook_events_job = dg.define_asset_job(
    "klaviyo_webhook_events",
    selection=dg.AssetSelection.assets(WEBHOOK_EVENTS_KEY),
    description="Load the events Klaviyo pushed by webhook (the inbox) into klaviyo_events.",
    tags={"klaviyo/job": "webhook_events"},
)


@dg.sensor(
    job=webhook_events_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Asks for a run of klaviyo/webhook_events when the webhook inbox holds pending events and no "
    "such run is queued or under way; one indexed count a tick, so an empty inbox costs next to nothing.",
)
def klaviyo_webhook_sensor(
    context: dg.SensorEvaluationContext, warehouse: Warehouse
) -> dg.SensorResult | dg.SkipReason:
    warehouse.require_migrated()
    with warehouse.engine.connect() as conn:
        pending = inbox.pending_summary(conn)
    if not pending.count:
        return _skip(context, "the webhook inbox has no pending events")
    waited = time.time() - pending.oldest_received_at.timestamp()
    if waited < GRACE_SECONDS:
        return _skip(context, f"{pending.count} events pending for {waited:.0f} s; the receiver loads them")
    active = context.instance.get_runs(
        dg.RunsFilter(job_name=webhook_events_job.name, statuses=_ACTIVE), limit=1
    )
    if active:
        return _skip(
            context,
            f"{pending.count} events pending; run {active[0].run_id} of {webhook_events_job.name} will take them",
        )
    cursor = json.loads(context.cursor) if context.cursor else {}
    now = time.time()
    if cursor.get("newest_seq") == pending.newest_seq and now - cursor.get("at", 0) < ASK_AGAIN_SECONDS:
        return _skip(context, f"{pending.count} events pending; already asked for them")
    attempt = cursor.get("attempt", 0) + 1 if cursor.get("newest_seq") == pending.newest_seq else 1
    new_cursor = {"newest_seq": pending.newest_seq, "at": now, "attempt": attempt}
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"webhook-inbox:{pending.newest_seq}:{attempt}",
                tags={"klaviyo/trigger": "webhook", "klaviyo/pending_events": str(pending.count)},
            )
        ],
        cursor=json.dumps(new_cursor, sort_keys=True),
    )
