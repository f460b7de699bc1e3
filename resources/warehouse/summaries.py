"""The entity tables' summary columns and the statistics charts: SQL over the statistics tables."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from resources.warehouse.core import Warehouse

_SUMMARIES = {
    "klaviyo_flows": """
        WITH s AS (
            SELECT flow_id AS id, sum(recipients) AS recipients, sum(delivered) AS delivered,
                   sum(opens_unique) AS opens, sum(clicks_unique) AS clicks,
                   sum(conversion_uniques) AS converted, sum(conversion_value) AS revenue
            FROM klaviyo_flow_stats_daily
            WHERE account_id = :a AND day > CAST(:today AS date) - CAST(:days AS integer) AND day <= :today GROUP BY flow_id)
        UPDATE klaviyo_flows t SET recipient_count = s.recipients,
               open_rate = s.opens::float8 / NULLIF(s.delivered, 0),
               click_rate = s.clicks::float8 / NULLIF(s.delivered, 0),
               conversion_rate = s.converted::float8 / NULLIF(s.delivered, 0), revenue = s.revenue
        FROM s WHERE t.account_id = :a AND t.id = s.id
          AND (t.recipient_count, t.open_rate, t.click_rate, t.conversion_rate, t.revenue) IS DISTINCT FROM
              (s.recipients, s.opens::float8 / NULLIF(s.delivered, 0), s.clicks::float8 / NULLIF(s.delivered, 0),
               s.converted::float8 / NULLIF(s.delivered, 0), s.revenue)""",
    "klaviyo_campaigns": """
        WITH s AS (
            SELECT campaign_id AS id, sum(recipients) AS recipients, sum(delivered) AS delivered,
                   sum(opens_unique) AS opens, sum(clicks_unique) AS clicks, sum(conversions) AS conversions,
                   sum(conversion_uniques) AS converted, sum(conversion_value) AS revenue
            FROM klaviyo_campaign_stats WHERE account_id = :a GROUP BY campaign_id)
        UPDATE klaviyo_campaigns t SET recipients = s.recipients, opens = s.opens, clicks = s.clicks,
               open_rate = s.opens::float8 / NULLIF(s.delivered, 0),
               click_rate = s.clicks::float8 / NULLIF(s.delivered, 0), conversions = s.conversions,
               conversion_rate = s.converted::float8 / NULLIF(s.delivered, 0), revenue = s.revenue
        FROM s WHERE t.account_id = :a AND t.id = s.id
          AND (t.recipients, t.opens, t.clicks, t.conversions, t.revenue, t.open_rate, t.click_rate,
               t.conversion_rate) IS DISTINCT FROM
              (s.recipients, s.opens, s.clicks, s.conversions, s.revenue, s.opens::float8 / NULLIF(s.delivered, 0),
               s.clicks::float8 / NULLIF(s.delivered, 0), s.converted::float8 / NULLIF(s.delivered, 0))""",
    "klaviyo_forms": """
        WITH s AS (
            SELECT form_id AS id, sum(viewed_form) AS views, sum(submits) AS submits,
                   sum(submitted_form_step_uniques) AS converted, sum(viewed_form_uniques) AS viewers
            FROM klaviyo_form_stats_daily
            WHERE account_id = :a AND day > CAST(:today AS date) - CAST(:days AS integer) AND day <= :today GROUP BY form_id)
        UPDATE klaviyo_forms t SET views = s.views, submissions = s.submits, conversions = s.converted,
               submit_rate = s.submits::float8 / NULLIF(s.viewers, 0)
        FROM s WHERE t.account_id = :a AND t.id = s.id
          AND (t.views, t.submissions, t.conversions, t.submit_rate) IS DISTINCT FROM
              (s.views, s.submits, s.converted, s.submits::float8 / NULLIF(s.viewers, 0))""",
    # The member count is the newer of two readings: the report's latest total_members (as of the end of its
    # account day, or its fetch if earlier) and Klaviyo's profile_count, which the segment_members sync writes
    # with member_count_at (migration 016). The report's wins only when it is the newer, and then clears
    # member_count_at; a later profile_count wins again.
    "klaviyo_segments": """
        WITH latest AS (
            SELECT DISTINCT ON (segment_id) segment_id AS id, total_members,
                   least(fetched_at, (day + 1)::timestamp AT TIME ZONE CAST(:tz AS text)) AS as_of
            FROM klaviyo_segment_stats_daily WHERE account_id = :a AND day <= :today
            ORDER BY segment_id, day DESC),
        added AS (
            SELECT segment_id AS id, sum(members_added) AS added FROM klaviyo_segment_stats_daily
            WHERE account_id = :a AND day > CAST(:today AS date) - CAST(:days AS integer) AND day <= :today GROUP BY segment_id),
        s AS (SELECT latest.id, latest.total_members, latest.as_of, added.added FROM latest LEFT JOIN added USING (id)),
        n AS (
            SELECT t.id, s.added,
                   t.member_count_at IS NULL OR t.member_count_at < s.as_of AS report_newer, s.total_members
            FROM klaviyo_segments t JOIN s ON t.id = s.id WHERE t.account_id = :a)
        UPDATE klaviyo_segments t
        SET member_count = CASE WHEN n.report_newer THEN n.total_members ELSE t.member_count END,
            member_count_at = CASE WHEN n.report_newer THEN NULL ELSE t.member_count_at END,
            active_count = n.added
        FROM n WHERE t.account_id = :a AND t.id = n.id
          AND (t.member_count, t.member_count_at, t.active_count) IS DISTINCT FROM
              (CASE WHEN n.report_newer THEN n.total_members ELSE t.member_count END,
               CASE WHEN n.report_newer THEN NULL ELSE t.member_count_at END, n.added)""",
}


def refresh_summaries(
    warehouse: Warehouse, account_id: str, today: dt.date, days: int, timezone: str = "UTC"
) -> dict[str, int]:
    """Fill the entity tables' summary columns from the statistics: flows and forms over the `days` days up
    to `today`, segments' member count from the latest day unless Klaviyo's profile_count was read later
    (`timezone`: the account's, whose days the statistics count; members added over the window), campaigns
    over their whole life (a campaign's figures all belong to its send). Rows already equal are not rewritten."""
    changed = {}
    params = {"a": account_id, "today": today, "days": days, "tz": timezone}
    with warehouse.transaction() as conn:
        for table, sql in _SUMMARIES.items():
            changed[table] = conn.execute(text(sql), params).rowcount
    return changed


CHART_DAYS = (
    30  # days a chart's sparkline shows: one character a day, narrow enough for Dagster's metadata pane
)
CHARTS = {
    "segment": (
        "segment_growth",
        """SELECT coalesce(g.name, s.segment_id) AS name,
                  array_agg(s.total_members ORDER BY s.day) AS series
           FROM klaviyo_segment_stats_daily s
           LEFT JOIN klaviyo_segments g ON g.account_id = s.account_id AND g.id = s.segment_id
           WHERE s.account_id = :a AND s.day > CAST(:today AS date) - :chart_days GROUP BY s.segment_id, g.name
           ORDER BY max(s.total_members) DESC LIMIT 10""",
    ),
    "flow": (
        "daily_revenue",
        """SELECT 'all flows' AS name, array_agg(revenue ORDER BY day) AS series
           FROM (SELECT day, sum(conversion_value) AS revenue FROM klaviyo_flow_stats_daily
                 WHERE account_id = :a AND day > CAST(:today AS date) - :chart_days GROUP BY day) d""",
    ),
    "form": (
        "daily_submits",
        """SELECT 'all forms' AS name, array_agg(submits ORDER BY day) AS series
           FROM (SELECT day, sum(submits) AS submits FROM klaviyo_form_stats_daily
                 WHERE account_id = :a AND day > CAST(:today AS date) - :chart_days GROUP BY day) d""",
    ),
}


def chart_series(warehouse: Warehouse, name: str, account_id: str, today: dt.date) -> tuple[str, list]:
    """A statistics family's chart: its label, and (name, series over the last CHART_DAYS days) rows."""
    label, sql = CHARTS[name]
    with warehouse.engine.connect() as conn:
        rows = [
            r
            for r in conn.execute(
                text(sql), {"a": account_id, "today": today, "chart_days": CHART_DAYS}
            ).all()
            if r.series
        ]
    return label, rows


def top_flows_by_revenue(warehouse: Warehouse, account_id: str, limit: int = 10) -> list:
    """The flows of the reports view with the most revenue."""
    with warehouse.engine.connect() as conn:
        return conn.execute(
            text(
                """SELECT name, recipients, open_rate, click_rate, revenue FROM klaviyo_flows_report
                   WHERE account_id = :a AND revenue IS NOT NULL ORDER BY revenue DESC LIMIT :n"""
            ),
            {"a": account_id, "n": limit},
        ).all()
