-- Sync bookkeeping: the state of each entity's sync, and one row per materialization.

CREATE TABLE klaviyo_sync_status (
    account_id        text        NOT NULL,
    entity            text        NOT NULL,
    status            text        NOT NULL DEFAULT 'never_run',
    last_started_at   timestamptz,
    last_finished_at  timestamptz,
    last_success_at   timestamptz,
    watermark         timestamptz,
    rows_inserted     bigint      NOT NULL DEFAULT 0,
    rows_updated      bigint      NOT NULL DEFAULT 0,
    rows_skipped      bigint      NOT NULL DEFAULT 0,
    last_error        text,
    run_id            text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entity),
    CONSTRAINT klaviyo_sync_status_status_chk CHECK (status IN ('never_run', 'running', 'success', 'failed'))
);
COMMENT ON TABLE klaviyo_sync_status IS 'One row per account and entity: the state of its sync.';
COMMENT ON COLUMN klaviyo_sync_status.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_sync_status.entity IS 'Entity name (campaigns, flows, forms, segments, lists, metrics, tags, ...).';
COMMENT ON COLUMN klaviyo_sync_status.status IS 'Outcome of the latest run: never_run, running, success or failed.';
COMMENT ON COLUMN klaviyo_sync_status.last_started_at IS 'When the latest run started.';
COMMENT ON COLUMN klaviyo_sync_status.last_finished_at IS 'When the latest run finished (success or failure).';
COMMENT ON COLUMN klaviyo_sync_status.last_success_at IS 'When a run last succeeded.';
COMMENT ON COLUMN klaviyo_sync_status.watermark IS 'Highest Klaviyo updated timestamp loaded so far (never later than the load time).';
COMMENT ON COLUMN klaviyo_sync_status.rows_inserted IS 'Rows inserted by the latest successful run.';
COMMENT ON COLUMN klaviyo_sync_status.rows_updated IS 'Rows updated by the latest successful run.';
COMMENT ON COLUMN klaviyo_sync_status.rows_skipped IS 'Rows skipped by the latest successful run (unchanged, or older than the stored row).';
COMMENT ON COLUMN klaviyo_sync_status.last_error IS 'Error of the latest failed run; cleared by a success.';
COMMENT ON COLUMN klaviyo_sync_status.run_id IS 'Dagster run id of the latest run.';
COMMENT ON COLUMN klaviyo_sync_status.updated_at IS 'When this status row last changed.';

CREATE TABLE klaviyo_sync_runs (
    id                 bigserial   PRIMARY KEY,
    account_id         text        NOT NULL,
    entity             text        NOT NULL,
    run_id             text,
    partition_key      text,
    window_start       timestamptz,
    window_end         timestamptz,
    full_refresh       boolean     NOT NULL DEFAULT false,
    status             text        NOT NULL,
    started_at         timestamptz NOT NULL,
    finished_at        timestamptz NOT NULL DEFAULT now(),
    duration_seconds   double precision,
    records_read       bigint      NOT NULL DEFAULT 0,
    records_rejected   bigint      NOT NULL DEFAULT 0,
    rows_inserted      bigint      NOT NULL DEFAULT 0,
    rows_updated       bigint      NOT NULL DEFAULT 0,
    rows_skipped       bigint      NOT NULL DEFAULT 0,
    api_calls          bigint      NOT NULL DEFAULT 0,
    retries            bigint      NOT NULL DEFAULT 0,
    throttled          bigint      NOT NULL DEFAULT 0,
    throttled_seconds  double precision NOT NULL DEFAULT 0,
    watermark          timestamptz,
    error              text,
    CONSTRAINT klaviyo_sync_runs_status_chk CHECK (status IN ('success', 'failed'))
);
CREATE INDEX klaviyo_sync_runs_entity_idx ON klaviyo_sync_runs (account_id, entity, finished_at DESC);
COMMENT ON TABLE klaviyo_sync_runs IS 'One row per materialization of an entity: window, rows, API usage, outcome.';
COMMENT ON COLUMN klaviyo_sync_runs.id IS 'Surrogate key.';
COMMENT ON COLUMN klaviyo_sync_runs.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_sync_runs.entity IS 'Entity name.';
COMMENT ON COLUMN klaviyo_sync_runs.run_id IS 'Dagster run id.';
COMMENT ON COLUMN klaviyo_sync_runs.partition_key IS 'Dagster partition key, or range start...end for a backfill run.';
COMMENT ON COLUMN klaviyo_sync_runs.window_start IS 'Start of the sync window actually read (inclusive, UTC).';
COMMENT ON COLUMN klaviyo_sync_runs.window_end IS 'End of the sync window actually read (exclusive, UTC).';
COMMENT ON COLUMN klaviyo_sync_runs.full_refresh IS 'Whether the run ignored the watermark.';
COMMENT ON COLUMN klaviyo_sync_runs.status IS 'success or failed.';
COMMENT ON COLUMN klaviyo_sync_runs.started_at IS 'When the materialization started.';
COMMENT ON COLUMN klaviyo_sync_runs.finished_at IS 'When the materialization finished.';
COMMENT ON COLUMN klaviyo_sync_runs.duration_seconds IS 'Wall time of the materialization.';
COMMENT ON COLUMN klaviyo_sync_runs.records_read IS 'Records received from the API in the window.';
COMMENT ON COLUMN klaviyo_sync_runs.records_rejected IS 'Records that could not be loaded (no id, unparseable timestamp).';
COMMENT ON COLUMN klaviyo_sync_runs.rows_inserted IS 'Rows inserted.';
COMMENT ON COLUMN klaviyo_sync_runs.rows_updated IS 'Rows updated.';
COMMENT ON COLUMN klaviyo_sync_runs.rows_skipped IS 'Rows skipped as unchanged or older than the stored row.';
COMMENT ON COLUMN klaviyo_sync_runs.api_calls IS 'HTTP requests made to Klaviyo.';
COMMENT ON COLUMN klaviyo_sync_runs.retries IS 'Requests retried (429, 5xx, timeouts, cut connections).';
COMMENT ON COLUMN klaviyo_sync_runs.throttled IS 'Responses with status 429.';
COMMENT ON COLUMN klaviyo_sync_runs.throttled_seconds IS 'Seconds spent waiting for the rate budget or Retry-After.';
COMMENT ON COLUMN klaviyo_sync_runs.watermark IS 'Watermark after the run.';
COMMENT ON COLUMN klaviyo_sync_runs.error IS 'Error message of a failed run.';
