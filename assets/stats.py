"""Statistics assets: flow, form and segment statistics by day and campaign statistics from Klaviyo's
Reporting API (one step plans every family's calls against the shared daily quota), and the entity tables'
summary columns that BI reads. Both follow their upstream with automation conditions."""

import datetime as dt

import dagster as dg
from pydantic import Field

from assets.accounts import REFUSED, account_client, account_label, for_each_account
from assets.declaration import API_POOL
from assets.partitions import Scope, entity_partitions
from assets.report_loading import StatsOutcome, StatsRequest, load_statistics
from assets.table_metadata import code_version, partition_metadata, table_metadata
from resources import settings
from resources.calendar import AccountCalendar
from resources.klaviyo import KlaviyoResource
from resources.reports import DAILY_QUOTA, FAMILIES, ReportFormatError
from resources.warehouse import Warehouse
from resources.warehouse import queries as q
from resources.warehouse.ledger import ReportLedger
from resources.warehouse.summaries import (
    CHART_DAYS,
    CHARTS,
    chart_series,
    refresh_summaries,
    top_flows_by_revenue,
)

UTC = dt.UTC
STATS_KEYS = {
    "flow": dg.AssetKey(["klaviyo", "flow_stats_daily"]),
    "form": dg.AssetKey(["klaviyo", "form_stats_daily"]),
    "segment": dg.AssetKey(["klaviyo", "segment_stats_daily"]),
    "campaign": dg.AssetKey(["klaviyo", "campaign_stats"]),
}
UPSTREAM = {
    "flow": ["flows", "metrics"],
    "form": ["forms"],
    "segment": ["segments"],
    "campaign": ["campaigns", "metrics"],
}
DESCRIPTIONS = {
    "flow": "Flow statistics per flow message, channel and day (flow series report, 60 days per call).",
    "form": "Form statistics per form and day (form series report, 60 days per call).",
    "segment": "Segment membership per segment and day (segment series report, 60 days per call).",
    "campaign": "Campaign statistics per message and channel (campaign values report over a timeframe that "
    "holds each send whole; read again until 30 days after the send).",
}


class StatsConfig(dg.Config):
    """Run configuration of the statistics step."""

    lookback_days: int = Field(
        default=7,
        ge=0,
        description="Re-read this many recent days on every run; a day is settled (not read again) once read "
        "this long after it ended. Klaviyo revises attributed conversions for days.",
    )
    full_refresh: bool = Field(default=False, description="Read every day of the range, settled or not.")
    conversion_metric_name: str = Field(
        default="Placed Order", description="Conversion metric of flow and campaign reports, by name."
    )
    conversion_metric_id: str | None = Field(
        default=None, description="Conversion metric by id (wins over the name)."
    )
    daily_quota: int = Field(
        default=DAILY_QUOTA,
        ge=1,
        description="Report requests allowed per account and day of the account's time zone (Klaviyo: 225).",
    )
    campaign_refresh_days: int = Field(
        default=30,
        ge=0,
        description="Campaigns are read again on every run until this many days after their send (opens, "
        "clicks and conversions keep arriving).",
    )


def _stats_condition() -> dg.AutomationCondition:
    # After each tick, once the upstream entities have updated: a few report calls per family and tick.
    return dg.AutomationCondition.on_cron(settings.stats_cron())


SPECS = [
    dg.AssetSpec(
        key=STATS_KEYS[name],
        deps=[dg.AssetKey(["klaviyo", e]) for e in UPSTREAM[name]],
        description=DESCRIPTIONS[name],
        group_name="klaviyo_stats",
        kinds={"python", "pandas", "postgres"},
        owners=settings.asset_owners(),
        code_version=code_version(FAMILIES[name]),
        partitions_def=entity_partitions,
        automation_condition=_stats_condition(),
        metadata={"table": FAMILIES[name].table, "dagster/table_name": FAMILIES[name].table},
        skippable=True,
    )
    for name in STATS_KEYS
]


@dg.multi_asset(
    name="klaviyo_stats",
    specs=SPECS,
    can_subset=True,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=API_POOL,
    retry_policy=dg.RetryPolicy(max_retries=1, delay=settings.step_retry_delay()),
)
def klaviyo_stats(
    context: dg.AssetExecutionContext, config: StatsConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
):
    warehouse.require_migrated()
    selected = [name for name, key in STATS_KEYS.items() if key in context.selected_asset_keys]
    materialized: dict[str, dict] = {}

    def load_one(scope: Scope) -> dict:
        first, last = dt.date.fromisoformat(scope.first_day), dt.date.fromisoformat(scope.last_day)
        with account_client(klaviyo, warehouse, scope) as client:
            account = client.account()
            ledger = ReportLedger(
                warehouse.engine,
                account.id,
                quota=config.daily_quota,
                calendar=AccountCalendar(account.timezone),
            )
            request = StatsRequest(
                families=selected,
                first_day=first,
                last_day=last,
                lookback_days=config.lookback_days,
                full_refresh=config.full_refresh,
                conversion_metric_name=config.conversion_metric_name,
                conversion_metric_id=config.conversion_metric_id,
                run_id=context.run_id,
                campaign_refresh_days=config.campaign_refresh_days,
            )
            outcome = load_statistics(request, client, warehouse, ledger, log=context.log)
        deferred = []
        for name in selected:
            family = outcome.families[name]
            if family.deferred:
                deferred.append(name)
                continue  # not materialized: its days wait for the quota (the catch-up sensor asks again)
            window = {
                **_metadata(name, outcome, warehouse),
                **table_metadata(warehouse, FAMILIES[name].table),
            }
            rows = _rows_by_day(FAMILIES[name], outcome.account_id, first, last, warehouse)
            materialized[name] = partition_metadata(context, STATS_KEYS[name], scope.keys, window, rows)
        if deferred:
            context.log.warning(
                f"not materialized for lack of report quota{account_label(scope)}: {', '.join(deferred)} "
                f"({outcome.quota_used}/{outcome.quota} requests used today); loaded days are kept"
            )
        return {}

    # Klaviyo refused the request or the key (401/403), or answered what cannot be read: a retry of the step
    # would get the same answer.
    for_each_account(context, load_one, (*REFUSED, ReportFormatError))
    for name, metadata in materialized.items():
        yield dg.MaterializeResult(asset_key=STATS_KEYS[name], metadata=metadata)


def _rows_by_day(family, account_id: str, first: dt.date, last: dt.date, warehouse: Warehouse) -> dict | None:
    """A daily family's rows per day (the account's days); None for campaigns (one row per campaign, no day)."""
    if not family.series:
        return None
    with warehouse.engine.connect() as conn:
        return q.rows_per_day(conn, family.table, "day", account_id, first, last, utc=False)


def _metadata(name: str, outcome: StatsOutcome, warehouse: Warehouse) -> dict:
    family = outcome.families[name]
    meta: dict = {
        "rows_inserted": family.counts.inserted,
        "rows_revised": family.counts.updated,
        "rows_unchanged": family.counts.skipped,
        "report_calls_planned": len(family.planned),
        "report_calls_made": len(family.made),
        "report_pages": family.pages,
        "results_rejected": len(family.rejected),
        "report_quota_used_today": outcome.quota_used,
        "report_quota": outcome.quota,
        "windows": ", ".join(f"{c.start}..{c.end}" for c in family.made) or "none (all days settled)",
    }
    if family.metric_note:
        meta["conversion_metric"] = family.metric_note
    if family.skipped:
        meta["skipped"] = family.skipped
    if family.rejected:
        meta["rejected_examples"] = dg.MetadataValue.json(family.rejected[:20])
    chart = _chart(name, warehouse, outcome.account_id, outcome.today)
    if chart:
        meta.update(chart)
    return meta


SPARK = "▁▂▃▄▅▆▇█"
NAME_WIDTH = 24


def sparkline(values: list[float]) -> str:
    """A one-line chart of a series (Dagster's UI renders it in markdown tables)."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return ""
    lo, hi = min(numbers), max(numbers)
    if hi == lo:
        return SPARK[3] * len(numbers)
    return "".join(SPARK[int((v - lo) / (hi - lo) * (len(SPARK) - 1))] for v in numbers)


def _chart(name: str, warehouse: Warehouse, account_id: str, today: dt.date) -> dict:
    """The last CHART_DAYS days as sparklines (markdown) plus the latest figures' sum as a number Dagster plots
    across runs. Series names are cut to NAME_WIDTH characters so the table fits the metadata pane."""
    if name not in CHARTS:
        return {}
    label, rows = chart_series(warehouse, name, account_id, today)
    if not rows:
        return {}
    lines = [f"| series | latest | last {CHART_DAYS} days |", "|---|---:|---|"]
    for r in rows:
        latest = r.series[-1]
        name = str(r.name).replace("|", "/")
        name = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"
        lines.append(f"| {name} | {latest:,.0f} | {sparkline(r.series)} |")
    return {
        label: dg.MetadataValue.md("\n".join(lines)),
        f"{label}_sum_of_latest": float(sum(r.series[-1] or 0 for r in rows)),
    }


class SummaryConfig(dg.Config):
    """Run configuration of the summary columns."""

    days: int = Field(default=30, ge=1, description="Window of the flows' and forms' summary figures (days).")


@dg.asset(
    name="entity_summaries",
    key_prefix=["klaviyo"],
    group_name="klaviyo_analytics",
    kinds={"python", "postgres"},
    owners=settings.asset_owners(),
    deps=list(STATS_KEYS.values()),
    description="The entity tables' summary columns (recipients, rates, revenue, views, member counts) "
    "from the statistics; what the *_report views show.",
    automation_condition=dg.AutomationCondition.eager().without(~dg.AutomationCondition.any_deps_missing()),
)
def entity_summaries(
    context: dg.AssetExecutionContext, config: SummaryConfig, klaviyo: KlaviyoResource, warehouse: Warehouse
) -> dg.MaterializeResult:
    warehouse.require_migrated()

    def refresh_one(scope: Scope) -> dict:
        account = klaviyo.account(scope.account)
        today = AccountCalendar(account.timezone).today(dt.datetime.now(UTC))
        changed = refresh_summaries(warehouse, account.id, today, config.days, account.timezone)
        context.log.info(
            f"summary columns{account_label(scope)} over {config.days} days to {today}: rows changed {changed}"
        )
        top = top_flows_by_revenue(warehouse, account.id)
        table = ["| flow | recipients | open rate | click rate | revenue |", "|---|---:|---:|---:|---:|"]
        table += [
            f"| {str(r.name).replace('|', '/')} | {r.recipients or 0:,} | {r.open_rate or 0:.1%} | "
            f"{r.click_rate or 0:.1%} | {r.revenue or 0:,.2f} |"
            for r in top
        ]
        return {
            **{f"changed_{t}": n for t, n in changed.items()},
            "window_days": config.days,
            "top_flows_by_revenue": dg.MetadataValue.md("\n".join(table)),
        }

    return dg.MaterializeResult(metadata=for_each_account(context, refresh_one))
