-- A sync whose run ended while it was under way (the run's process died, was killed, or the run was
-- canceled; Dagster's run monitoring marks such a run failed and may retry it) is 'interrupted', not 'failed':
-- it did not fail on its own data, and its watermark is where the last complete window left it.
ALTER TABLE klaviyo_sync_status DROP CONSTRAINT klaviyo_sync_status_status_chk;
ALTER TABLE klaviyo_sync_status ADD CONSTRAINT klaviyo_sync_status_status_chk
    CHECK (status IN ('never_run', 'running', 'success', 'failed', 'interrupted'));
COMMENT ON COLUMN klaviyo_sync_status.status IS
    'Outcome of the latest run: never_run, running, success, failed (the sync failed), or interrupted (its run ended while it was under way: the process died or was killed, or the run was canceled).';
