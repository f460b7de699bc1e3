-- The entity tables (campaigns, flows, forms, segments, lists, metrics) hold hundreds to tens of thousands of
-- rows: the newest updated_date, or the rows updated since a time, are a quick scan of them, while an index on
-- (account_id, updated_date) took roughly a fifth of every merge's time (every insert and every update adds
-- an entry to it). They keep the key and the indexes the seed asks for: status, name, created_date and
-- updated_at. klaviyo_profiles (millions of rows) keeps its own.
DROP INDEX IF EXISTS klaviyo_campaigns_updated_date_idx;
DROP INDEX IF EXISTS klaviyo_flows_updated_date_idx;
DROP INDEX IF EXISTS klaviyo_forms_updated_date_idx;
DROP INDEX IF EXISTS klaviyo_segments_updated_date_idx;
DROP INDEX IF EXISTS klaviyo_lists_updated_date_idx;
DROP INDEX IF EXISTS klaviyo_metrics_updated_date_idx;
