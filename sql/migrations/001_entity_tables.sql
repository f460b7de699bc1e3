-- Entity tables: one row per (account, Klaviyo id), current state, soft-deleted only.
-- Shared shape: key, Klaviyo's own timestamps, the seed's summary metrics, raw payload in metadata,
-- bookkeeping columns. Summary metrics are filled by the statistics layer; NULL until then.

CREATE TABLE klaviyo_campaigns (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    channel          text,
    archived         boolean     NOT NULL DEFAULT false,
    send_strategy    text,
    send_time        timestamptz,
    scheduled_at     timestamptz,
    created_date     timestamptz,
    updated_date     timestamptz,
    recipients       bigint,
    opens            bigint,
    clicks           bigint,
    open_rate        double precision,
    click_rate       double precision,
    conversions      bigint,
    conversion_rate  double precision,
    revenue          numeric(18, 2),
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_campaigns_status_idx ON klaviyo_campaigns (status);
CREATE INDEX klaviyo_campaigns_name_idx ON klaviyo_campaigns (name);
CREATE INDEX klaviyo_campaigns_channel_idx ON klaviyo_campaigns (channel);
CREATE INDEX klaviyo_campaigns_send_time_idx ON klaviyo_campaigns (send_time DESC);
CREATE INDEX klaviyo_campaigns_created_date_idx ON klaviyo_campaigns (created_date DESC);
CREATE INDEX klaviyo_campaigns_updated_date_idx ON klaviyo_campaigns (account_id, updated_date DESC);
CREATE INDEX klaviyo_campaigns_updated_at_idx ON klaviyo_campaigns (updated_at DESC);

CREATE TABLE klaviyo_flows (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    archived         boolean     NOT NULL DEFAULT false,
    trigger_type     text,
    created_date     timestamptz,
    updated_date     timestamptz,
    recipient_count  bigint,
    open_rate        double precision,
    click_rate       double precision,
    conversion_rate  double precision,
    revenue          numeric(18, 2),
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_flows_status_idx ON klaviyo_flows (status);
CREATE INDEX klaviyo_flows_name_idx ON klaviyo_flows (name);
CREATE INDEX klaviyo_flows_created_date_idx ON klaviyo_flows (created_date DESC);
CREATE INDEX klaviyo_flows_updated_date_idx ON klaviyo_flows (account_id, updated_date DESC);
CREATE INDEX klaviyo_flows_updated_at_idx ON klaviyo_flows (updated_at DESC);

CREATE TABLE klaviyo_forms (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    ab_test          boolean,
    created_date     timestamptz,
    updated_date     timestamptz,
    views            bigint,
    submissions      bigint,
    conversions      bigint,
    submit_rate      double precision,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_forms_status_idx ON klaviyo_forms (status);
CREATE INDEX klaviyo_forms_name_idx ON klaviyo_forms (name);
CREATE INDEX klaviyo_forms_created_date_idx ON klaviyo_forms (created_date DESC);
CREATE INDEX klaviyo_forms_updated_date_idx ON klaviyo_forms (account_id, updated_date DESC);
CREATE INDEX klaviyo_forms_updated_at_idx ON klaviyo_forms (updated_at DESC);

CREATE TABLE klaviyo_segments (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    is_active        boolean,
    is_processing    boolean,
    is_starred       boolean,
    created_date     timestamptz,
    updated_date     timestamptz,
    member_count     bigint,
    active_count     bigint,
    conversion_rate  double precision,
    revenue          numeric(18, 2),
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_segments_status_idx ON klaviyo_segments (status);
CREATE INDEX klaviyo_segments_name_idx ON klaviyo_segments (name);
CREATE INDEX klaviyo_segments_created_date_idx ON klaviyo_segments (created_date DESC);
CREATE INDEX klaviyo_segments_updated_date_idx ON klaviyo_segments (account_id, updated_date DESC);
CREATE INDEX klaviyo_segments_updated_at_idx ON klaviyo_segments (updated_at DESC);

CREATE TABLE klaviyo_lists (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    opt_in_process   text,
    created_date     timestamptz,
    updated_date     timestamptz,
    member_count     bigint,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_lists_name_idx ON klaviyo_lists (name);
CREATE INDEX klaviyo_lists_status_idx ON klaviyo_lists (status);
CREATE INDEX klaviyo_lists_created_date_idx ON klaviyo_lists (created_date DESC);
CREATE INDEX klaviyo_lists_updated_date_idx ON klaviyo_lists (account_id, updated_date DESC);

CREATE TABLE klaviyo_metrics (
    id                    text        NOT NULL,
    account_id            text        NOT NULL,
    name                  text,
    status                text,
    integration_name      text,
    integration_category  text,
    created_date          timestamptz,
    updated_date          timestamptz,
    metadata              jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    last_synced_at        timestamptz,
    deleted_at            timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_metrics_name_idx ON klaviyo_metrics (name);
CREATE INDEX klaviyo_metrics_status_idx ON klaviyo_metrics (status);
CREATE INDEX klaviyo_metrics_updated_date_idx ON klaviyo_metrics (account_id, updated_date DESC);

CREATE TABLE klaviyo_tags (
    id               text        NOT NULL,
    account_id       text        NOT NULL,
    name             text,
    status           text,
    tag_group_id     text,
    created_date     timestamptz,
    updated_date     timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_tags_name_idx ON klaviyo_tags (name);
CREATE INDEX klaviyo_tags_status_idx ON klaviyo_tags (status);
