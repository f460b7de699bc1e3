-- Profiles (current state) and events (immutable, range-partitioned by month on the event datetime).

CREATE TABLE klaviyo_profiles (
    id                text        NOT NULL,
    account_id        text        NOT NULL,
    email             text,
    phone_number      text,
    external_id       text,
    first_name        text,
    last_name         text,
    organization      text,
    locale            text,
    title             text,
    image             text,
    created_date      timestamptz,
    updated_date      timestamptz,
    last_event_date   timestamptz,
    address1          text,
    address2          text,
    city              text,
    region            text,
    country           text,
    zip               text,
    timezone          text,
    ip                text,
    latitude          double precision,
    longitude         double precision,
    properties        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    subscriptions     jsonb,
    predictive_analytics jsonb,
    attributes_extra  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_synced_at    timestamptz,
    deleted_at        timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_profiles_email_idx ON klaviyo_profiles (email);
CREATE INDEX klaviyo_profiles_updated_date_idx ON klaviyo_profiles (account_id, updated_date DESC);

COMMENT ON TABLE klaviyo_profiles IS 'Klaviyo profiles: current state per account and id, one row each.';
COMMENT ON COLUMN klaviyo_profiles.id IS 'Klaviyo profile id (26-character ULID).';
COMMENT ON COLUMN klaviyo_profiles.account_id IS 'Klaviyo account the profile belongs to.';
COMMENT ON COLUMN klaviyo_profiles.email IS 'Email address.';
COMMENT ON COLUMN klaviyo_profiles.phone_number IS 'Phone number in E.164.';
COMMENT ON COLUMN klaviyo_profiles.external_id IS 'Id of the profile in an external system.';
COMMENT ON COLUMN klaviyo_profiles.first_name IS 'First name.';
COMMENT ON COLUMN klaviyo_profiles.last_name IS 'Last name.';
COMMENT ON COLUMN klaviyo_profiles.organization IS 'Organization.';
COMMENT ON COLUMN klaviyo_profiles.locale IS 'Locale (IETF tag, e.g. en-US).';
COMMENT ON COLUMN klaviyo_profiles.title IS 'Job title.';
COMMENT ON COLUMN klaviyo_profiles.image IS 'Image URL.';
COMMENT ON COLUMN klaviyo_profiles.created_date IS 'When the profile was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_profiles.updated_date IS 'When the profile was last updated in Klaviyo (UTC); guards upserts.';
COMMENT ON COLUMN klaviyo_profiles.last_event_date IS 'When the profile last had an event (UTC).';
COMMENT ON COLUMN klaviyo_profiles.address1 IS 'Location: first address line.';
COMMENT ON COLUMN klaviyo_profiles.address2 IS 'Location: second address line.';
COMMENT ON COLUMN klaviyo_profiles.city IS 'Location: city.';
COMMENT ON COLUMN klaviyo_profiles.region IS 'Location: region or state.';
COMMENT ON COLUMN klaviyo_profiles.country IS 'Location: country.';
COMMENT ON COLUMN klaviyo_profiles.zip IS 'Location: postal code.';
COMMENT ON COLUMN klaviyo_profiles.timezone IS 'Location: time zone.';
COMMENT ON COLUMN klaviyo_profiles.ip IS 'Location: IP address.';
COMMENT ON COLUMN klaviyo_profiles.latitude IS 'Location: latitude (Klaviyo sends text or number).';
COMMENT ON COLUMN klaviyo_profiles.longitude IS 'Location: longitude (Klaviyo sends text or number).';
COMMENT ON COLUMN klaviyo_profiles.properties IS 'Custom properties as received; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_profiles.subscriptions IS 'Consent and suppression state (only when the subscriptions option is on).';
COMMENT ON COLUMN klaviyo_profiles.predictive_analytics IS 'Predicted CLV, churn etc. (opt-in: it lowers the API rate limit).';
COMMENT ON COLUMN klaviyo_profiles.attributes_extra IS 'Attributes Klaviyo sent that have no column here (new fields), and relationships.';
COMMENT ON COLUMN klaviyo_profiles.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_profiles.updated_at IS 'When this warehouse row was last changed by a sync.';
COMMENT ON COLUMN klaviyo_profiles.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_profiles.deleted_at IS 'When the profile was found deleted (soft delete); NULL while it exists.';

-- Events are immutable and their datetime never changes, so (account_id, id, datetime) identifies an event;
-- Postgres requires the partition key in a partitioned table's primary key.
CREATE TABLE klaviyo_events (
    id                text        NOT NULL,
    account_id        text        NOT NULL,
    datetime          timestamptz NOT NULL,
    "timestamp"       bigint,
    uuid              text,
    metric_id         text,
    profile_id        text,
    value             double precision,
    attribution_ids   jsonb,
    event_properties  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    attributes_extra  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    last_synced_at    timestamptz,
    PRIMARY KEY (account_id, id, datetime)
) PARTITION BY RANGE (datetime);
CREATE INDEX klaviyo_events_metric_idx ON klaviyo_events (account_id, metric_id, datetime);
CREATE INDEX klaviyo_events_profile_idx ON klaviyo_events (account_id, profile_id, datetime);

COMMENT ON TABLE klaviyo_events IS 'Klaviyo events, one row each, range-partitioned by month on datetime (partitions made on demand).';
COMMENT ON COLUMN klaviyo_events.id IS 'Klaviyo event id.';
COMMENT ON COLUMN klaviyo_events.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_events.datetime IS 'When the event happened (UTC); the partition key.';
COMMENT ON COLUMN klaviyo_events."timestamp" IS 'When the event happened, Unix seconds, as Klaviyo sends it.';
COMMENT ON COLUMN klaviyo_events.uuid IS 'Klaviyo event UUID.';
COMMENT ON COLUMN klaviyo_events.metric_id IS 'Id of the event''s metric (join klaviyo_metrics; never key on the metric name, Klaviyo renames them).';
COMMENT ON COLUMN klaviyo_events.profile_id IS 'Id of the profile the event belongs to.';
COMMENT ON COLUMN klaviyo_events.value IS 'Monetary value of the event ($value), when it has one.';
COMMENT ON COLUMN klaviyo_events.attribution_ids IS 'Attribution ids (campaign, flow, message) from the event''s attributions relationship.';
COMMENT ON COLUMN klaviyo_events.event_properties IS 'Event properties as received; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_events.attributes_extra IS 'Attributes Klaviyo sent that have no column here (new fields).';
COMMENT ON COLUMN klaviyo_events.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_events.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_events.last_synced_at IS 'When a sync last wrote this row.';
