-- What the seed's frontend lists: one row per live entity with its summary figures.
-- The figures are filled by the klaviyo/entity_summaries asset from the report statistics.

CREATE OR REPLACE VIEW klaviyo_segments_report AS
SELECT account_id, id, name, member_count AS count, conversion_rate, revenue, active_count AS members_added,
       is_active, updated_date
FROM klaviyo_segments
WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW klaviyo_flows_report AS
SELECT account_id, id, name, status, recipient_count AS recipients, open_rate, click_rate, conversion_rate,
       revenue, updated_date
FROM klaviyo_flows
WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW klaviyo_forms_report AS
SELECT account_id, id, name, status, views, submissions, conversions, submit_rate, updated_date
FROM klaviyo_forms
WHERE deleted_at IS NULL;

CREATE OR REPLACE VIEW klaviyo_campaigns_report AS
SELECT account_id, id, name, channel, status, send_time, recipients, opens, clicks, open_rate, click_rate,
       conversions, conversion_rate, revenue, updated_date
FROM klaviyo_campaigns
WHERE deleted_at IS NULL;

COMMENT ON VIEW klaviyo_segments_report IS 'Segments as the seed lists them: id, name, count, conversion rate, revenue.';
COMMENT ON COLUMN klaviyo_segments_report.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_segments_report.id IS 'Segment id.';
COMMENT ON COLUMN klaviyo_segments_report.name IS 'Segment name.';
COMMENT ON COLUMN klaviyo_segments_report.count IS 'Members at the end of the latest reported day (total_members).';
COMMENT ON COLUMN klaviyo_segments_report.conversion_rate IS 'Not reported by Klaviyo for segments: NULL.';
COMMENT ON COLUMN klaviyo_segments_report.revenue IS 'Not reported by Klaviyo for segments: NULL.';
COMMENT ON COLUMN klaviyo_segments_report.members_added IS 'Members added over the summary window.';
COMMENT ON COLUMN klaviyo_segments_report.is_active IS 'Whether the segment is active.';
COMMENT ON COLUMN klaviyo_segments_report.updated_date IS 'When Klaviyo last changed the segment.';

COMMENT ON VIEW klaviyo_flows_report IS 'Flows with their figures over the summary window.';
COMMENT ON COLUMN klaviyo_flows_report.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flows_report.id IS 'Flow id.';
COMMENT ON COLUMN klaviyo_flows_report.name IS 'Flow name.';
COMMENT ON COLUMN klaviyo_flows_report.status IS 'Flow status (draft, manual, live).';
COMMENT ON COLUMN klaviyo_flows_report.recipients IS 'Recipients over the summary window.';
COMMENT ON COLUMN klaviyo_flows_report.open_rate IS 'Unique opens / delivered over the summary window, in [0, 1].';
COMMENT ON COLUMN klaviyo_flows_report.click_rate IS 'Unique clicks / delivered over the summary window, in [0, 1].';
COMMENT ON COLUMN klaviyo_flows_report.conversion_rate IS 'Unique conversions / delivered over the summary window, in [0, 1].';
COMMENT ON COLUMN klaviyo_flows_report.revenue IS 'Attributed conversion value over the summary window.';
COMMENT ON COLUMN klaviyo_flows_report.updated_date IS 'When Klaviyo last changed the flow.';

COMMENT ON VIEW klaviyo_forms_report IS 'Sign-up forms with their figures over the summary window.';
COMMENT ON COLUMN klaviyo_forms_report.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_forms_report.id IS 'Form id.';
COMMENT ON COLUMN klaviyo_forms_report.name IS 'Form name.';
COMMENT ON COLUMN klaviyo_forms_report.status IS 'Form status.';
COMMENT ON COLUMN klaviyo_forms_report.views IS 'Form views over the summary window.';
COMMENT ON COLUMN klaviyo_forms_report.submissions IS 'Form submissions over the summary window.';
COMMENT ON COLUMN klaviyo_forms_report.conversions IS 'Unique submitting profiles over the summary window.';
COMMENT ON COLUMN klaviyo_forms_report.submit_rate IS 'Submits / unique views over the summary window.';
COMMENT ON COLUMN klaviyo_forms_report.updated_date IS 'When Klaviyo last changed the form.';

COMMENT ON VIEW klaviyo_campaigns_report IS 'Campaigns with their figures (whole campaign, all messages).';
COMMENT ON COLUMN klaviyo_campaigns_report.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_campaigns_report.id IS 'Campaign id.';
COMMENT ON COLUMN klaviyo_campaigns_report.name IS 'Campaign name.';
COMMENT ON COLUMN klaviyo_campaigns_report.channel IS 'Message channel: email, sms or mobile_push.';
COMMENT ON COLUMN klaviyo_campaigns_report.status IS 'Campaign status.';
COMMENT ON COLUMN klaviyo_campaigns_report.send_time IS 'When the campaign was (or will be) sent.';
COMMENT ON COLUMN klaviyo_campaigns_report.recipients IS 'Recipients.';
COMMENT ON COLUMN klaviyo_campaigns_report.opens IS 'Unique opens.';
COMMENT ON COLUMN klaviyo_campaigns_report.clicks IS 'Unique clicks.';
COMMENT ON COLUMN klaviyo_campaigns_report.open_rate IS 'Unique opens / delivered, in [0, 1].';
COMMENT ON COLUMN klaviyo_campaigns_report.click_rate IS 'Unique clicks / delivered, in [0, 1].';
COMMENT ON COLUMN klaviyo_campaigns_report.conversions IS 'Attributed conversions.';
COMMENT ON COLUMN klaviyo_campaigns_report.conversion_rate IS 'Unique conversions / delivered, in [0, 1].';
COMMENT ON COLUMN klaviyo_campaigns_report.revenue IS 'Attributed conversion value.';
COMMENT ON COLUMN klaviyo_campaigns_report.updated_date IS 'When Klaviyo last changed the campaign.';
