-- The Klaviyo accounts the warehouse holds rows of: the id GET /api/accounts gives for a key, its time zone
-- (the days reports count in) and, with an accounts file, the name it is declared under. Written by every sync
-- when it opens its client; BI joins it to name accounts and to read days in each account's time zone.
CREATE TABLE klaviyo_accounts (
    account_id     text        PRIMARY KEY,
    name           text,
    timezone       text        NOT NULL,
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE klaviyo_accounts IS 'One row per Klaviyo account the warehouse holds: its id, declared name and time zone.';
COMMENT ON COLUMN klaviyo_accounts.account_id IS 'Klaviyo account id (the account_id of every other table).';
COMMENT ON COLUMN klaviyo_accounts.name IS 'Name in the accounts file (KLAVIYO_ACCOUNTS_FILE); NULL for the one account of KLAVIYO_API_KEY.';
COMMENT ON COLUMN klaviyo_accounts.timezone IS 'The account''s IANA time zone (GET /api/accounts): the days of its report statistics.';
COMMENT ON COLUMN klaviyo_accounts.first_seen_at IS 'When a sync first read the account.';
COMMENT ON COLUMN klaviyo_accounts.last_seen_at IS 'When a sync last read the account.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_accounts TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted klaviyo_accounts: the migrating user may not grant on it';
END
$$;
