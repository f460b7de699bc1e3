-- Daily KPIs across flows, campaigns (by send day), forms and segments.

CREATE OR REPLACE VIEW klaviyo_daily_kpis AS
WITH flows AS (
    SELECT account_id, day, sum(recipients) AS recipients, sum(delivered) AS delivered,
           sum(opens_unique) AS opens_unique, sum(clicks_unique) AS clicks_unique,
           sum(conversions) AS conversions, sum(conversion_value) AS revenue
    FROM klaviyo_flow_stats_daily GROUP BY account_id, day
), campaigns AS (
    SELECT s.account_id, (c.send_time AT TIME ZONE 'UTC')::date AS day, sum(s.recipients) AS recipients,
           sum(s.delivered) AS delivered, sum(s.opens_unique) AS opens_unique,
           sum(s.clicks_unique) AS clicks_unique, sum(s.conversions) AS conversions,
           sum(s.conversion_value) AS revenue
    FROM klaviyo_campaign_stats s
    JOIN klaviyo_campaigns c ON c.account_id = s.account_id AND c.id = s.campaign_id
    WHERE c.send_time IS NOT NULL
    GROUP BY s.account_id, (c.send_time AT TIME ZONE 'UTC')::date
), forms AS (
    SELECT account_id, day, sum(viewed_form) AS views, sum(submits) AS submits
    FROM klaviyo_form_stats_daily GROUP BY account_id, day
), segments AS (
    SELECT account_id, day, sum(members_added) AS added, sum(members_removed) AS removed
    FROM klaviyo_segment_stats_daily GROUP BY account_id, day
), days AS (
    SELECT account_id, day FROM flows UNION SELECT account_id, day FROM campaigns
    UNION SELECT account_id, day FROM forms UNION SELECT account_id, day FROM segments
)
SELECT d.account_id, d.day,
       COALESCE(f.recipients, 0) + COALESCE(c.recipients, 0) AS recipients,
       COALESCE(f.delivered, 0) + COALESCE(c.delivered, 0) AS delivered,
       COALESCE(f.opens_unique, 0) + COALESCE(c.opens_unique, 0) AS opens_unique,
       COALESCE(f.clicks_unique, 0) + COALESCE(c.clicks_unique, 0) AS clicks_unique,
       COALESCE(f.conversions, 0) + COALESCE(c.conversions, 0) AS conversions,
       COALESCE(f.revenue, 0) + COALESCE(c.revenue, 0) AS revenue,
       COALESCE(f.revenue, 0) AS flow_revenue,
       COALESCE(c.revenue, 0) AS campaign_revenue,
       COALESCE(fo.views, 0) AS form_views,
       COALESCE(fo.submits, 0) AS form_submits,
       COALESCE(s.added, 0) - COALESCE(s.removed, 0) AS segment_net_members
FROM days d
LEFT JOIN flows f ON f.account_id = d.account_id AND f.day = d.day
LEFT JOIN campaigns c ON c.account_id = d.account_id AND c.day = d.day
LEFT JOIN forms fo ON fo.account_id = d.account_id AND fo.day = d.day
LEFT JOIN segments s ON s.account_id = d.account_id AND s.day = d.day;

COMMENT ON VIEW klaviyo_daily_kpis IS 'One row per account and day: messaging, revenue, form and segment KPIs (campaigns counted on their send day, UTC).';
COMMENT ON COLUMN klaviyo_daily_kpis.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_daily_kpis.day IS 'Day.';
COMMENT ON COLUMN klaviyo_daily_kpis.recipients IS 'Flow and campaign recipients.';
COMMENT ON COLUMN klaviyo_daily_kpis.delivered IS 'Flow and campaign messages delivered.';
COMMENT ON COLUMN klaviyo_daily_kpis.opens_unique IS 'Flow and campaign unique opens.';
COMMENT ON COLUMN klaviyo_daily_kpis.clicks_unique IS 'Flow and campaign unique clicks.';
COMMENT ON COLUMN klaviyo_daily_kpis.conversions IS 'Flow and campaign attributed conversions.';
COMMENT ON COLUMN klaviyo_daily_kpis.revenue IS 'Flow and campaign attributed conversion value.';
COMMENT ON COLUMN klaviyo_daily_kpis.flow_revenue IS 'Flow attributed conversion value.';
COMMENT ON COLUMN klaviyo_daily_kpis.campaign_revenue IS 'Campaign attributed conversion value (campaigns sent that day).';
COMMENT ON COLUMN klaviyo_daily_kpis.form_views IS 'Form views.';
COMMENT ON COLUMN klaviyo_daily_kpis.form_submits IS 'Form submissions.';
COMMENT ON COLUMN klaviyo_daily_kpis.segment_net_members IS 'Members added minus removed, over all segments.';
