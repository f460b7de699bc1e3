-- A read-only role for BI tools: it can read this schema's tables and views and nothing else.
-- Log in as a member of it: CREATE ROLE looker LOGIN PASSWORD '...' IN ROLE klaviyo_bi;
-- Creating a role needs CREATEROLE; without it the migration notes so and moves on (see README).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        BEGIN
            CREATE ROLE klaviyo_bi NOLOGIN;
            ALTER ROLE klaviyo_bi SET default_transaction_read_only = on;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;  -- created by a concurrent migration of another schema
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO klaviyo_bi', current_schema());
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO klaviyo_bi', current_schema());
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO klaviyo_bi', current_schema());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not set up: the migrating user may not create roles or grant on this schema';
END
$$;
