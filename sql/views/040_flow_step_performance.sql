-- Flow performance by step: flow -> step (klaviyo_flow_actions) -> message (klaviyo_flow_messages) -> the flow
-- series report's figures (klaviyo_flow_stats_daily, per message, channel and account day).
--   klaviyo_flow_step_daily        one row per report row (message, channel, day) with its step and flow;
--   klaviyo_flow_step_performance  one row per step, its figures summed over its messages and days.
-- Soft-deleted flows, steps and messages are kept and flagged (their past figures still count). Report rows of
-- a message that is not loaded keep their figures with NULL step columns; in the per-step view they make one
-- row per flow with a NULL step_id.

CREATE OR REPLACE VIEW klaviyo_flow_step_daily AS
SELECT s.account_id, s.flow_id, f.name AS flow_name, m.flow_action_id AS step_id, a.action_type AS step_type,
       a.status AS step_status,
       CASE WHEN a.id IS NOT NULL THEN a.deleted_at IS NOT NULL END AS step_deleted,
       s.flow_message_id AS message_id, m.name AS message_name, s.send_channel AS channel,
       CASE WHEN m.id IS NOT NULL THEN m.deleted_at IS NOT NULL END AS message_deleted,
       s.day, s.recipients, s.delivered, s.bounced, s.failed, s.opens, s.opens_unique, s.clicks,
       s.clicks_unique, s.conversions, s.conversion_uniques, s.conversion_value AS revenue, s.unsubscribes,
       s.unsubscribe_uniques, s.spam_complaints, s.open_rate, s.click_rate, s.conversion_rate
FROM klaviyo_flow_stats_daily s
LEFT JOIN klaviyo_flow_messages m ON m.account_id = s.account_id AND m.id = s.flow_message_id
LEFT JOIN klaviyo_flow_actions a ON a.account_id = m.account_id AND a.id = m.flow_action_id
LEFT JOIN klaviyo_flows f ON f.account_id = s.account_id AND f.id = s.flow_id;

CREATE OR REPLACE VIEW klaviyo_flow_step_performance AS
WITH totals AS (
    SELECT account_id, flow_id, step_id, min(day) AS first_day, max(day) AS last_day,
           count(DISTINCT day) AS days_reported, sum(recipients) AS recipients, sum(delivered) AS delivered,
           sum(bounced) AS bounced, sum(failed) AS failed, sum(opens) AS opens,
           sum(opens_unique) AS opens_unique, sum(clicks) AS clicks, sum(clicks_unique) AS clicks_unique,
           sum(conversions) AS conversions, sum(conversion_uniques) AS conversion_uniques,
           sum(revenue) AS revenue, sum(unsubscribes) AS unsubscribes,
           sum(unsubscribe_uniques) AS unsubscribe_uniques, sum(spam_complaints) AS spam_complaints
    FROM klaviyo_flow_step_daily
    GROUP BY account_id, flow_id, step_id
), messages AS (
    SELECT account_id, flow_action_id, count(*) AS messages,
           string_agg(DISTINCT channel, ', ' ORDER BY channel) AS channels,
           string_agg(name, ', ' ORDER BY name, id) AS message_names
    FROM klaviyo_flow_messages
    WHERE deleted_at IS NULL
    GROUP BY account_id, flow_action_id
), steps AS (
    SELECT a.account_id, a.flow_id, a.id AS step_id, a.action_type AS step_type, a.status AS step_status,
           a.deleted_at IS NOT NULL AS step_deleted, a.next_action_id AS next_step_id
    FROM klaviyo_flow_actions a
)
SELECT COALESCE(st.account_id, t.account_id) AS account_id, COALESCE(st.flow_id, t.flow_id) AS flow_id,
       f.name AS flow_name, f.status AS flow_status, f.deleted_at IS NOT NULL AS flow_deleted,
       COALESCE(st.step_id, t.step_id) AS step_id, st.step_type, st.step_status, st.step_deleted,
       st.next_step_id, COALESCE(ms.messages, 0) AS messages, ms.channels, ms.message_names,
       t.first_day, t.last_day, COALESCE(t.days_reported, 0) AS days_reported,
       COALESCE(t.recipients, 0) AS recipients, COALESCE(t.delivered, 0) AS delivered,
       COALESCE(t.bounced, 0) AS bounced, COALESCE(t.failed, 0) AS failed, COALESCE(t.opens, 0) AS opens,
       COALESCE(t.opens_unique, 0) AS opens_unique, COALESCE(t.clicks, 0) AS clicks,
       COALESCE(t.clicks_unique, 0) AS clicks_unique, COALESCE(t.conversions, 0) AS conversions,
       COALESCE(t.conversion_uniques, 0) AS conversion_uniques, COALESCE(t.revenue, 0) AS revenue,
       COALESCE(t.unsubscribes, 0) AS unsubscribes, COALESCE(t.unsubscribe_uniques, 0) AS unsubscribe_uniques,
       COALESCE(t.spam_complaints, 0) AS spam_complaints,
       t.delivered::double precision / NULLIF(t.recipients, 0) AS delivery_rate,
       t.opens_unique::double precision / NULLIF(t.delivered, 0) AS open_rate,
       t.clicks_unique::double precision / NULLIF(t.delivered, 0) AS click_rate,
       t.clicks_unique::double precision / NULLIF(t.opens_unique, 0) AS click_to_open_rate,
       t.conversion_uniques::double precision / NULLIF(t.delivered, 0) AS conversion_rate,
       t.unsubscribe_uniques::double precision / NULLIF(t.delivered, 0) AS unsubscribe_rate,
       t.revenue::double precision / NULLIF(t.recipients, 0) AS revenue_per_recipient
FROM steps st
FULL JOIN totals t ON t.account_id = st.account_id AND t.step_id = st.step_id
LEFT JOIN messages ms ON ms.account_id = st.account_id AND ms.flow_action_id = st.step_id
LEFT JOIN klaviyo_flows f ON f.account_id = COALESCE(st.account_id, t.account_id)
    AND f.id = COALESCE(st.flow_id, t.flow_id);

COMMENT ON VIEW klaviyo_flow_step_daily IS 'Flow figures per step, message, channel and account day: the flow series report joined to its message, step and flow. Deleted steps and messages are flagged, not hidden.';
COMMENT ON COLUMN klaviyo_flow_step_daily.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flow_step_daily.flow_id IS 'Flow (klaviyo_flows.id).';
COMMENT ON COLUMN klaviyo_flow_step_daily.flow_name IS 'Flow name (NULL if the flow is not loaded).';
COMMENT ON COLUMN klaviyo_flow_step_daily.step_id IS 'Step (klaviyo_flow_actions.id) that sends the message; NULL if the message is not loaded.';
COMMENT ON COLUMN klaviyo_flow_step_daily.step_type IS 'Step type: send-email, send-sms, send-mobile-push, ab-test, ...';
COMMENT ON COLUMN klaviyo_flow_step_daily.step_status IS 'Step status: live, draft, manual or disabled.';
COMMENT ON COLUMN klaviyo_flow_step_daily.step_deleted IS 'Whether the step is gone from Klaviyo (soft-deleted: its figures still count); NULL if the step is not loaded.';
COMMENT ON COLUMN klaviyo_flow_step_daily.message_id IS 'Flow message the figures belong to (klaviyo_flow_messages.id).';
COMMENT ON COLUMN klaviyo_flow_step_daily.message_name IS 'Message name in the flow editor (NULL if the message is not loaded).';
COMMENT ON COLUMN klaviyo_flow_step_daily.channel IS 'Channel the figures are for: email, sms, push-notification or whatsapp.';
COMMENT ON COLUMN klaviyo_flow_step_daily.message_deleted IS 'Whether the message is gone from Klaviyo (soft-deleted); NULL if the message is not loaded.';
COMMENT ON COLUMN klaviyo_flow_step_daily.day IS 'Day in the account''s time zone (as Klaviyo reports it).';
COMMENT ON COLUMN klaviyo_flow_step_daily.recipients IS 'Recipients.';
COMMENT ON COLUMN klaviyo_flow_step_daily.delivered IS 'Messages delivered.';
COMMENT ON COLUMN klaviyo_flow_step_daily.bounced IS 'Messages bounced.';
COMMENT ON COLUMN klaviyo_flow_step_daily.failed IS 'Messages that failed to send.';
COMMENT ON COLUMN klaviyo_flow_step_daily.opens IS 'Opens (all).';
COMMENT ON COLUMN klaviyo_flow_step_daily.opens_unique IS 'Unique opens.';
COMMENT ON COLUMN klaviyo_flow_step_daily.clicks IS 'Clicks (all).';
COMMENT ON COLUMN klaviyo_flow_step_daily.clicks_unique IS 'Unique clicks.';
COMMENT ON COLUMN klaviyo_flow_step_daily.conversions IS 'Conversions of the conversion metric attributed to the message.';
COMMENT ON COLUMN klaviyo_flow_step_daily.conversion_uniques IS 'Unique converting profiles.';
COMMENT ON COLUMN klaviyo_flow_step_daily.revenue IS 'Attributed conversion value, account currency.';
COMMENT ON COLUMN klaviyo_flow_step_daily.unsubscribes IS 'Unsubscribes.';
COMMENT ON COLUMN klaviyo_flow_step_daily.unsubscribe_uniques IS 'Unique unsubscribing profiles.';
COMMENT ON COLUMN klaviyo_flow_step_daily.spam_complaints IS 'Spam complaints.';
COMMENT ON COLUMN klaviyo_flow_step_daily.open_rate IS 'Klaviyo''s open rate that day: unique opens / delivered, in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_step_daily.click_rate IS 'Klaviyo''s click rate that day: unique clicks / delivered, in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_step_daily.conversion_rate IS 'Klaviyo''s conversion rate that day: unique conversions / delivered, in [0, 1].';

COMMENT ON VIEW klaviyo_flow_step_performance IS 'One row per flow step (deleted ones flagged, steps without figures included): its messages and its figures summed over every reported day.';
COMMENT ON COLUMN klaviyo_flow_step_performance.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flow_step_performance.flow_id IS 'Flow (klaviyo_flows.id).';
COMMENT ON COLUMN klaviyo_flow_step_performance.flow_name IS 'Flow name (NULL if the flow is not loaded).';
COMMENT ON COLUMN klaviyo_flow_step_performance.flow_status IS 'Flow status: draft, manual or live.';
COMMENT ON COLUMN klaviyo_flow_step_performance.flow_deleted IS 'Whether the flow is gone from Klaviyo (soft-deleted).';
COMMENT ON COLUMN klaviyo_flow_step_performance.step_id IS 'Step (klaviyo_flow_actions.id); NULL for the figures of messages that are not loaded, one such row per flow.';
COMMENT ON COLUMN klaviyo_flow_step_performance.step_type IS 'Step type: send-email, send-sms, send-mobile-push, time-delay, ab-test, ...';
COMMENT ON COLUMN klaviyo_flow_step_performance.step_status IS 'Step status: live, draft, manual or disabled (NULL for steps without one, e.g. delays).';
COMMENT ON COLUMN klaviyo_flow_step_performance.step_deleted IS 'Whether the step is gone from Klaviyo (soft-deleted: kept with its figures); NULL if the step is not loaded.';
COMMENT ON COLUMN klaviyo_flow_step_performance.next_step_id IS 'The step that follows (NULL at the end of the flow; splits name their branches in the step''s definition).';
COMMENT ON COLUMN klaviyo_flow_step_performance.messages IS 'Messages the step sends now (not deleted); 0 for steps that send none.';
COMMENT ON COLUMN klaviyo_flow_step_performance.channels IS 'Channels of those messages, comma-separated.';
COMMENT ON COLUMN klaviyo_flow_step_performance.message_names IS 'Names of those messages, comma-separated.';
COMMENT ON COLUMN klaviyo_flow_step_performance.first_day IS 'First account day with figures for the step.';
COMMENT ON COLUMN klaviyo_flow_step_performance.last_day IS 'Last account day with figures for the step.';
COMMENT ON COLUMN klaviyo_flow_step_performance.days_reported IS 'Account days with figures for the step (0: none loaded).';
COMMENT ON COLUMN klaviyo_flow_step_performance.recipients IS 'Recipients, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.delivered IS 'Messages delivered, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.bounced IS 'Messages bounced, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.failed IS 'Messages that failed to send, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.opens IS 'Opens (all), summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.opens_unique IS 'Daily unique opens summed over the days (a profile opening on two days counts twice).';
COMMENT ON COLUMN klaviyo_flow_step_performance.clicks IS 'Clicks (all), summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.clicks_unique IS 'Daily unique clicks summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.conversions IS 'Attributed conversions, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.conversion_uniques IS 'Daily unique converting profiles summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.revenue IS 'Attributed conversion value, summed over the days, account currency.';
COMMENT ON COLUMN klaviyo_flow_step_performance.unsubscribes IS 'Unsubscribes, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.unsubscribe_uniques IS 'Daily unique unsubscribing profiles summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.spam_complaints IS 'Spam complaints, summed over the days.';
COMMENT ON COLUMN klaviyo_flow_step_performance.delivery_rate IS 'delivered / recipients over the days, in [0, 1]; NULL without recipients.';
COMMENT ON COLUMN klaviyo_flow_step_performance.open_rate IS 'opens_unique / delivered over the days, in [0, 1]; NULL without deliveries.';
COMMENT ON COLUMN klaviyo_flow_step_performance.click_rate IS 'clicks_unique / delivered over the days, in [0, 1]; NULL without deliveries.';
COMMENT ON COLUMN klaviyo_flow_step_performance.click_to_open_rate IS 'clicks_unique / opens_unique over the days; NULL without opens.';
COMMENT ON COLUMN klaviyo_flow_step_performance.conversion_rate IS 'conversion_uniques / delivered over the days, in [0, 1]; NULL without deliveries.';
COMMENT ON COLUMN klaviyo_flow_step_performance.unsubscribe_rate IS 'unsubscribe_uniques / delivered over the days, in [0, 1]; NULL without deliveries.';
COMMENT ON COLUMN klaviyo_flow_step_performance.revenue_per_recipient IS 'revenue / recipients over the days, account currency; NULL without recipients.';

-- The BI role reads them (migration 006's default privileges grant it; said again for a migrating role other
-- than the one that ran 006).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_flow_step_daily, klaviyo_flow_step_performance TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted the flow step views: the migrating user may not grant on them';
END
$$;
