"""Report API calls and wall time to backfill 365 days of flow, form, segment and campaign statistics on the
simulator's medium account, through the Dagster statistics job, with Klaviyo's real report limits (1/s, 2/min,
225/day) on a time-scaled clock (the simulator and the client agree on the scale)."""

from __future__ import annotations

import datetime as dt
import os
import time

TIME_SCALE = 0.01  # a minute lasts 0.6 s
TODAY = dt.datetime.now(dt.UTC).date()
FIRST = TODAY - dt.timedelta(days=364)
os.environ["KLAVIYO_START_DATE"] = FIRST.isoformat()  # read when the definitions load

import dagster as dg  # noqa: E402
from _common import BENCH_KEY, scratch_warehouse, simulator_process  # noqa: E402
from sqlalchemy import text  # noqa: E402


def main() -> None:
    from assets.report_loading import StatsRequest, plan
    from assets.stats import entity_summaries, klaviyo_stats
    from assets.sync import SyncRequest, sync_entity
    from pipelines.jobs import stats_job
    from resources.klaviyo import KlaviyoClient, KlaviyoResource
    from resources.reports import DAILY_QUOTA

    wh = scratch_warehouse("bench_stats")
    with simulator_process("--scale", "medium", "--time-scale", str(TIME_SCALE)) as (url, _proc):
        client = KlaviyoClient(BENCH_KEY, base_url=url, rate_time_scale=TIME_SCALE)
        for entity in ("flows", "forms", "segments", "campaigns", "metrics"):
            sync_entity(SyncRequest(entity, None, None, full_refresh=True), client, wh)
        families = ["flow", "form", "segment", "campaign"]
        planned = plan(StatsRequest(families, FIRST, TODAY), wh, client.account_id(), dt.datetime.now(dt.UTC))
        client.close()
        defs = dg.Definitions(
            assets=[klaviyo_stats, entity_summaries],
            jobs=[stats_job],
            resources={
                "klaviyo": KlaviyoResource(api_key=BENCH_KEY, base_url=url, rate_time_scale=TIME_SCALE),
                "warehouse": wh,
            },
        )
        began = time.perf_counter()
        result = defs.resolve_job_def("klaviyo_sync_stats").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(),
            tags={
                "dagster/asset_partition_range_start": FIRST.isoformat(),
                "dagster/asset_partition_range_end": TODAY.isoformat(),
            },
            raise_on_error=False,
        )
        wall = time.perf_counter() - began
    assert result.success, "the statistics run failed"
    with wh.engine.connect() as conn:
        calls = dict(
            conn.execute(
                text("SELECT report, sum(requests) FROM klaviyo_report_calls WHERE status = 'ok' GROUP BY 1")
            ).all()
        )
        rows = {
            t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in (
                "klaviyo_flow_stats_daily",
                "klaviyo_form_stats_daily",
                "klaviyo_segment_stats_daily",
                "klaviyo_campaign_stats",
            )
        }
    total = sum(calls.values())
    print(
        f"backfill {FIRST} .. {TODAY} (365 days), simulator medium account, report limits time-scaled x{TIME_SCALE}"
    )
    print(f"planned before the run: {sum(len(c) for c in planned.values())} calls "
          f"({', '.join(f'{k} {len(v)}' for k, v in planned.items())})")  # fmt: skip
    print(f"report requests made:   {total} ({', '.join(f'{k} {v}' for k, v in sorted(calls.items()))})")
    print(
        f"target <= 30 calls: {'met' if total <= 30 else 'MISSED'}; {total}/{DAILY_QUOTA} of one day's quota"
    )
    print(f"rows: {rows}")
    floor = max(0, total - 2) / 2 * 60 * TIME_SCALE  # 2 a minute after the first two
    print(f"wall time of the run: {wall:.1f} s (the 2/min limit alone needs {floor:.1f} s at this scale)")
    print(f"at Klaviyo's real clock the limit alone needs {max(0, total - 2) / 2:.1f} min")


if __name__ == "__main__":
    main()
