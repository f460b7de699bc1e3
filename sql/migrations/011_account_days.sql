-- Report bookkeeping in the account's calendar, and report results that could not be read.
-- Klaviyo counts report days in the account's time zone (GET /api/accounts -> timezone): klaviyo_report_quota,
-- klaviyo_report_coverage and the daily statistics tables hold the account's days from now on (for an account
-- on UTC, as every account read before this migration was taken to be, nothing changes).
ALTER TABLE klaviyo_report_calls ADD COLUMN rows_rejected integer NOT NULL DEFAULT 0;

COMMENT ON COLUMN klaviyo_report_calls.rows_rejected IS 'Results of the response that could not be read (malformed); their days are read again by the next run.';
COMMENT ON COLUMN klaviyo_report_calls.requests IS 'HTTP requests the query took: one per page of results, plus retries.';
COMMENT ON TABLE klaviyo_report_quota IS 'Reporting API requests per account and account day (its time zone), shared by every run: Klaviyo allows 225 a day.';
COMMENT ON TABLE klaviyo_report_coverage IS 'Which account days each report family has loaded, and when (a day read before it settled is read again). Campaigns: the days their sends began on.';
COMMENT ON TABLE klaviyo_campaign_stats IS 'Campaign statistics per campaign message and channel, from the campaign values report over a timeframe that holds the whole send (from its first day up to now, or a year).';
COMMENT ON COLUMN klaviyo_campaign_stats.timeframe_start IS 'First account day of the report timeframe the figures were read over (on or before the send began).';
COMMENT ON COLUMN klaviyo_campaign_stats.timeframe_end IS 'Last account day of that timeframe (the send is whole inside it).';
