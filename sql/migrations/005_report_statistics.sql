-- Reporting API statistics (flows, forms, segments by day; campaigns per message), the report-call ledger
-- shared by every run, and which days each report family has loaded.

CREATE TABLE klaviyo_flow_stats_daily (
    account_id            text        NOT NULL,
    flow_id               text        NOT NULL,
    flow_message_id       text        NOT NULL,
    send_channel          text        NOT NULL,
    day                   date        NOT NULL,
    recipients            bigint,
    delivered             bigint,
    bounced               bigint,
    failed                bigint,
    opens                 bigint,
    opens_unique          bigint,
    clicks                bigint,
    clicks_unique         bigint,
    conversions           bigint,
    conversion_uniques    bigint,
    conversion_value      numeric(18, 2),
    unsubscribes          bigint,
    unsubscribe_uniques   bigint,
    spam_complaints       bigint,
    open_rate             double precision,
    click_rate            double precision,
    click_to_open_rate    double precision,
    conversion_rate       double precision,
    delivery_rate         double precision,
    bounce_rate           double precision,
    unsubscribe_rate      double precision,
    spam_complaint_rate   double precision,
    revenue_per_recipient double precision,
    average_order_value   double precision,
    statistics            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    conversion_metric_id  text,
    fetched_at            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_synced_at        timestamptz,
    PRIMARY KEY (account_id, flow_id, flow_message_id, send_channel, day)
);
CREATE INDEX klaviyo_flow_stats_daily_day_idx ON klaviyo_flow_stats_daily (account_id, day);

CREATE TABLE klaviyo_campaign_stats (
    account_id            text        NOT NULL,
    campaign_id           text        NOT NULL,
    campaign_message_id   text        NOT NULL,
    send_channel          text        NOT NULL,
    recipients            bigint,
    delivered             bigint,
    bounced               bigint,
    failed                bigint,
    opens                 bigint,
    opens_unique          bigint,
    clicks                bigint,
    clicks_unique         bigint,
    conversions           bigint,
    conversion_uniques    bigint,
    conversion_value      numeric(18, 2),
    unsubscribes          bigint,
    unsubscribe_uniques   bigint,
    spam_complaints       bigint,
    open_rate             double precision,
    click_rate            double precision,
    click_to_open_rate    double precision,
    conversion_rate       double precision,
    delivery_rate         double precision,
    bounce_rate           double precision,
    unsubscribe_rate      double precision,
    spam_complaint_rate   double precision,
    revenue_per_recipient double precision,
    average_order_value   double precision,
    statistics            jsonb       NOT NULL DEFAULT '{}'::jsonb,
    conversion_metric_id  text,
    timeframe_start       date        NOT NULL,
    timeframe_end         date        NOT NULL,
    fetched_at            timestamptz NOT NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_synced_at        timestamptz,
    PRIMARY KEY (account_id, campaign_id, campaign_message_id, send_channel)
);

CREATE TABLE klaviyo_form_stats_daily (
    account_id                   text        NOT NULL,
    form_id                      text        NOT NULL,
    day                          date        NOT NULL,
    viewed_form                  bigint,
    viewed_form_uniques          bigint,
    viewed_form_step             bigint,
    viewed_form_step_uniques     bigint,
    submits                      bigint,
    submitted_form_step          bigint,
    submitted_form_step_uniques  bigint,
    closed_form                  bigint,
    closed_form_uniques          bigint,
    qualified_form               bigint,
    qualified_form_uniques       bigint,
    submit_rate                  double precision,
    statistics                   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    fetched_at                   timestamptz NOT NULL,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    last_synced_at               timestamptz,
    PRIMARY KEY (account_id, form_id, day)
);
CREATE INDEX klaviyo_form_stats_daily_day_idx ON klaviyo_form_stats_daily (account_id, day);

CREATE TABLE klaviyo_segment_stats_daily (
    account_id           text        NOT NULL,
    segment_id           text        NOT NULL,
    day                  date        NOT NULL,
    members_added        bigint,
    members_removed      bigint,
    net_members_changed  bigint,
    total_members        bigint,
    statistics           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    fetched_at           timestamptz NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    last_synced_at       timestamptz,
    PRIMARY KEY (account_id, segment_id, day)
);
CREATE INDEX klaviyo_segment_stats_daily_day_idx ON klaviyo_segment_stats_daily (account_id, day);

CREATE TABLE klaviyo_report_quota (
    account_id    text        NOT NULL,
    day           date        NOT NULL,
    calls         integer     NOT NULL DEFAULT 0,
    quota         integer     NOT NULL,
    exhausted_at  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, day),
    CONSTRAINT klaviyo_report_quota_calls_chk CHECK (calls >= 0)
);

CREATE TABLE klaviyo_report_calls (
    id                    bigserial   PRIMARY KEY,
    account_id            text        NOT NULL,
    report                text        NOT NULL,
    timeframe_start       date        NOT NULL,
    timeframe_end         date        NOT NULL,
    conversion_metric_id  text,
    status                text        NOT NULL,
    requests              integer     NOT NULL DEFAULT 1,
    rows_written          bigint      NOT NULL DEFAULT 0,
    run_id                text,
    detail                text,
    called_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT klaviyo_report_calls_status_chk CHECK (status IN ('ok', 'refused', 'quota_exhausted', 'failed'))
);
CREATE INDEX klaviyo_report_calls_account_idx ON klaviyo_report_calls (account_id, called_at DESC);

CREATE TABLE klaviyo_report_coverage (
    account_id  text        NOT NULL,
    family      text        NOT NULL,
    day         date        NOT NULL,
    loaded_at   timestamptz NOT NULL,
    run_id      text,
    PRIMARY KEY (account_id, family, day),
    CONSTRAINT klaviyo_report_coverage_family_chk CHECK (family IN ('flow', 'form', 'segment', 'campaign'))
);

COMMENT ON TABLE klaviyo_flow_stats_daily IS 'Flow statistics per flow message, channel and day, from the flow series report (interval daily). Attributed as the Klaviyo UI attributes them.';
COMMENT ON TABLE klaviyo_campaign_stats IS 'Campaign statistics per campaign message and channel, from the campaign values report over the window the send date falls in.';
COMMENT ON TABLE klaviyo_form_stats_daily IS 'Sign-up form statistics per form and day, from the form series report (interval daily).';
COMMENT ON TABLE klaviyo_segment_stats_daily IS 'Segment membership per segment and day, from the segment series report (interval daily; Klaviyo has no data before 2023-06-01).';
COMMENT ON TABLE klaviyo_report_quota IS 'Reporting API calls per account and UTC day, shared by every run: Klaviyo allows 225 a day.';
COMMENT ON TABLE klaviyo_report_calls IS 'One row per Reporting API query: which report, timeframe and outcome.';
COMMENT ON TABLE klaviyo_report_coverage IS 'Which days each report family has loaded, and when (a day read before it settled is read again).';

COMMENT ON COLUMN klaviyo_flow_stats_daily.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.flow_id IS 'Flow (klaviyo_flows.id).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.flow_message_id IS 'Flow message the figures belong to.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.send_channel IS 'Channel: email, sms, push-notification or whatsapp.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.day IS 'Day in the account''s timezone (Klaviyo reports by the account''s calendar).';
COMMENT ON COLUMN klaviyo_campaign_stats.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_campaign_stats.campaign_id IS 'Campaign (klaviyo_campaigns.id).';
COMMENT ON COLUMN klaviyo_campaign_stats.campaign_message_id IS 'Campaign message the figures belong to.';
COMMENT ON COLUMN klaviyo_campaign_stats.send_channel IS 'Channel: email, sms, push-notification or whatsapp.';
COMMENT ON COLUMN klaviyo_campaign_stats.timeframe_start IS 'First day of the report timeframe these figures were read with (the send falls inside it).';
COMMENT ON COLUMN klaviyo_campaign_stats.timeframe_end IS 'Last day of that timeframe (inclusive).';

COMMENT ON COLUMN klaviyo_flow_stats_daily.recipients IS 'Recipients (Klaviyo statistic recipients).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.delivered IS 'Messages delivered.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.bounced IS 'Messages bounced.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.failed IS 'Messages that failed to send.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.opens IS 'Opens (all).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.opens_unique IS 'Unique opens.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.clicks IS 'Clicks (all).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.clicks_unique IS 'Unique clicks.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.conversions IS 'Conversions of the conversion metric attributed to the message.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.conversion_uniques IS 'Unique converting profiles.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.conversion_value IS 'Attributed conversion value (revenue), account currency.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.unsubscribes IS 'Unsubscribes.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.unsubscribe_uniques IS 'Unique unsubscribing profiles.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.spam_complaints IS 'Spam complaints.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.open_rate IS 'Unique opens / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.click_rate IS 'Unique clicks / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.click_to_open_rate IS 'Unique clicks / unique opens, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.conversion_rate IS 'Unique conversions / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.delivery_rate IS 'Delivered / recipients, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.bounce_rate IS 'Bounced / recipients, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.unsubscribe_rate IS 'Unique unsubscribes / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.spam_complaint_rate IS 'Spam complaints / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_flow_stats_daily.revenue_per_recipient IS 'Conversion value / recipients, account currency.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.average_order_value IS 'Conversion value / conversions, account currency.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.statistics IS 'Every statistic Klaviyo returned for the row, under its API name (newer statistics included).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.conversion_metric_id IS 'Metric the conversions were counted on (default: Placed Order).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.fetched_at IS 'When the report was read; an older read never overwrites a newer one.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.created_at IS 'When the warehouse first stored this row.';
COMMENT ON COLUMN klaviyo_flow_stats_daily.updated_at IS 'When the warehouse last changed this row (a revised figure).';
COMMENT ON COLUMN klaviyo_flow_stats_daily.last_synced_at IS 'When a run last wrote this row.';

COMMENT ON COLUMN klaviyo_campaign_stats.recipients IS 'Recipients (Klaviyo statistic recipients).';
COMMENT ON COLUMN klaviyo_campaign_stats.delivered IS 'Messages delivered.';
COMMENT ON COLUMN klaviyo_campaign_stats.bounced IS 'Messages bounced.';
COMMENT ON COLUMN klaviyo_campaign_stats.failed IS 'Messages that failed to send.';
COMMENT ON COLUMN klaviyo_campaign_stats.opens IS 'Opens (all).';
COMMENT ON COLUMN klaviyo_campaign_stats.opens_unique IS 'Unique opens.';
COMMENT ON COLUMN klaviyo_campaign_stats.clicks IS 'Clicks (all).';
COMMENT ON COLUMN klaviyo_campaign_stats.clicks_unique IS 'Unique clicks.';
COMMENT ON COLUMN klaviyo_campaign_stats.conversions IS 'Conversions of the conversion metric attributed to the message.';
COMMENT ON COLUMN klaviyo_campaign_stats.conversion_uniques IS 'Unique converting profiles.';
COMMENT ON COLUMN klaviyo_campaign_stats.conversion_value IS 'Attributed conversion value (revenue), account currency.';
COMMENT ON COLUMN klaviyo_campaign_stats.unsubscribes IS 'Unsubscribes.';
COMMENT ON COLUMN klaviyo_campaign_stats.unsubscribe_uniques IS 'Unique unsubscribing profiles.';
COMMENT ON COLUMN klaviyo_campaign_stats.spam_complaints IS 'Spam complaints.';
COMMENT ON COLUMN klaviyo_campaign_stats.open_rate IS 'Unique opens / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.click_rate IS 'Unique clicks / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.click_to_open_rate IS 'Unique clicks / unique opens, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.conversion_rate IS 'Unique conversions / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.delivery_rate IS 'Delivered / recipients, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.bounce_rate IS 'Bounced / recipients, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.unsubscribe_rate IS 'Unique unsubscribes / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.spam_complaint_rate IS 'Spam complaints / delivered, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_campaign_stats.revenue_per_recipient IS 'Conversion value / recipients, account currency.';
COMMENT ON COLUMN klaviyo_campaign_stats.average_order_value IS 'Conversion value / conversions, account currency.';
COMMENT ON COLUMN klaviyo_campaign_stats.statistics IS 'Every statistic Klaviyo returned for the row, under its API name (newer statistics included).';
COMMENT ON COLUMN klaviyo_campaign_stats.conversion_metric_id IS 'Metric the conversions were counted on (default: Placed Order).';
COMMENT ON COLUMN klaviyo_campaign_stats.fetched_at IS 'When the report was read; an older read never overwrites a newer one.';
COMMENT ON COLUMN klaviyo_campaign_stats.created_at IS 'When the warehouse first stored this row.';
COMMENT ON COLUMN klaviyo_campaign_stats.updated_at IS 'When the warehouse last changed this row (a revised figure).';
COMMENT ON COLUMN klaviyo_campaign_stats.last_synced_at IS 'When a run last wrote this row.';

COMMENT ON COLUMN klaviyo_form_stats_daily.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_form_stats_daily.form_id IS 'Form (klaviyo_forms.id).';
COMMENT ON COLUMN klaviyo_form_stats_daily.day IS 'Day in the account''s timezone.';
COMMENT ON COLUMN klaviyo_form_stats_daily.viewed_form IS 'Form views.';
COMMENT ON COLUMN klaviyo_form_stats_daily.viewed_form_uniques IS 'Unique profiles who viewed the form.';
COMMENT ON COLUMN klaviyo_form_stats_daily.viewed_form_step IS 'Form step views.';
COMMENT ON COLUMN klaviyo_form_stats_daily.viewed_form_step_uniques IS 'Unique profiles who viewed a form step.';
COMMENT ON COLUMN klaviyo_form_stats_daily.submits IS 'Form submissions.';
COMMENT ON COLUMN klaviyo_form_stats_daily.submitted_form_step IS 'Form step submissions.';
COMMENT ON COLUMN klaviyo_form_stats_daily.submitted_form_step_uniques IS 'Unique profiles who submitted a form step.';
COMMENT ON COLUMN klaviyo_form_stats_daily.closed_form IS 'Times the form was closed.';
COMMENT ON COLUMN klaviyo_form_stats_daily.closed_form_uniques IS 'Unique profiles who closed the form.';
COMMENT ON COLUMN klaviyo_form_stats_daily.qualified_form IS 'Times a visitor qualified to see the form.';
COMMENT ON COLUMN klaviyo_form_stats_daily.qualified_form_uniques IS 'Unique profiles who qualified to see the form.';
COMMENT ON COLUMN klaviyo_form_stats_daily.submit_rate IS 'Submits / unique views, a fraction in [0, 1].';
COMMENT ON COLUMN klaviyo_form_stats_daily.statistics IS 'Every statistic Klaviyo returned for the row, under its API name.';
COMMENT ON COLUMN klaviyo_form_stats_daily.fetched_at IS 'When the report was read; an older read never overwrites a newer one.';
COMMENT ON COLUMN klaviyo_form_stats_daily.created_at IS 'When the warehouse first stored this row.';
COMMENT ON COLUMN klaviyo_form_stats_daily.updated_at IS 'When the warehouse last changed this row (a revised figure).';
COMMENT ON COLUMN klaviyo_form_stats_daily.last_synced_at IS 'When a run last wrote this row.';

COMMENT ON COLUMN klaviyo_segment_stats_daily.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.segment_id IS 'Segment (klaviyo_segments.id).';
COMMENT ON COLUMN klaviyo_segment_stats_daily.day IS 'Day in the account''s timezone.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.members_added IS 'Profiles that joined the segment that day.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.members_removed IS 'Profiles that left the segment that day.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.net_members_changed IS 'members_added - members_removed.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.total_members IS 'Members at the end of the day.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.statistics IS 'Every statistic Klaviyo returned for the row, under its API name.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.fetched_at IS 'When the report was read; an older read never overwrites a newer one.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.created_at IS 'When the warehouse first stored this row.';
COMMENT ON COLUMN klaviyo_segment_stats_daily.updated_at IS 'When the warehouse last changed this row (a revised figure).';
COMMENT ON COLUMN klaviyo_segment_stats_daily.last_synced_at IS 'When a run last wrote this row.';

COMMENT ON COLUMN klaviyo_report_quota.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_report_quota.day IS 'UTC day the calls were made.';
COMMENT ON COLUMN klaviyo_report_quota.calls IS 'Reporting API requests sent that day (retries included).';
COMMENT ON COLUMN klaviyo_report_quota.quota IS 'Daily allowance the runs planned with (Klaviyo: 225).';
COMMENT ON COLUMN klaviyo_report_quota.exhausted_at IS 'When Klaviyo answered 429 with a daily-quota Retry-After: no more calls that day.';
COMMENT ON COLUMN klaviyo_report_quota.updated_at IS 'When this row last changed.';

COMMENT ON COLUMN klaviyo_report_calls.id IS 'Surrogate key.';
COMMENT ON COLUMN klaviyo_report_calls.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_report_calls.report IS 'Report queried: flow-series, form-series, segment-series or campaign-values.';
COMMENT ON COLUMN klaviyo_report_calls.timeframe_start IS 'First day of the timeframe asked for.';
COMMENT ON COLUMN klaviyo_report_calls.timeframe_end IS 'Last day of the timeframe asked for (inclusive).';
COMMENT ON COLUMN klaviyo_report_calls.conversion_metric_id IS 'Conversion metric sent (flow and campaign reports).';
COMMENT ON COLUMN klaviyo_report_calls.status IS 'ok, refused (Klaviyo answered 400), quota_exhausted or failed.';
COMMENT ON COLUMN klaviyo_report_calls.requests IS 'HTTP requests the call took (retries included).';
COMMENT ON COLUMN klaviyo_report_calls.rows_written IS 'Statistics rows inserted or changed.';
COMMENT ON COLUMN klaviyo_report_calls.run_id IS 'Dagster run id.';
COMMENT ON COLUMN klaviyo_report_calls.detail IS 'Klaviyo''s error detail when the call did not succeed.';
COMMENT ON COLUMN klaviyo_report_calls.called_at IS 'When the call was made.';

COMMENT ON COLUMN klaviyo_report_coverage.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_report_coverage.family IS 'Report family: flow, form, segment or campaign.';
COMMENT ON COLUMN klaviyo_report_coverage.day IS 'Day loaded (account timezone).';
COMMENT ON COLUMN klaviyo_report_coverage.loaded_at IS 'When the day was last read; read again until a read comes after the day plus the attribution lookback.';
COMMENT ON COLUMN klaviyo_report_coverage.run_id IS 'Dagster run that last read the day.';

-- The summary columns on the entity tables are filled from these statistics (see README, "Statistics").
COMMENT ON COLUMN klaviyo_forms.conversions IS 'Unique profiles who submitted the form over the summary window (submitted_form_step_uniques).';
COMMENT ON COLUMN klaviyo_segments.conversion_rate IS 'Not reported by Klaviyo for segments (its segment reports carry membership only): NULL.';
COMMENT ON COLUMN klaviyo_segments.revenue IS 'Not reported by Klaviyo for segments (its segment reports carry membership only): NULL.';
COMMENT ON COLUMN klaviyo_segments.active_count IS 'Members added over the summary window.';
