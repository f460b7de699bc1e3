-- Push beside pull: Klaviyo's system webhooks land here first. The receiver (pipelines/webhooks.py) stores each
-- verified delivery in one transaction, one inbox row per event, before it answers 2xx; the klaviyo/webhook_events
-- asset moves pending rows through the events transform and guarded upsert that polling uses and marks them loaded
-- in the same transaction. A redelivered event finds its row (the key is the event's id) and adds no second one.
-- The BI role reads the warehouse's tables, not its plumbing: it gets no access to these two.
CREATE TABLE klaviyo_webhook_deliveries (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id            text COLLATE "C" NOT NULL,
    webhook_id            text COLLATE "C" NOT NULL,
    sent_at               timestamptz NOT NULL,
    meta                  jsonb       NOT NULL,
    body_sha256           text        NOT NULL,
    body_bytes            integer     NOT NULL,
    items                 integer     NOT NULL,
    new_events            integer     NOT NULL,
    repeated_events       integer     NOT NULL,
    unknown_topic_events  integer     NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX klaviyo_webhook_deliveries_received_idx ON klaviyo_webhook_deliveries (received_at);

CREATE TABLE klaviyo_webhook_inbox (
    account_id         text COLLATE "C" NOT NULL,
    event_id           text COLLATE "C" NOT NULL,
    seq                bigint GENERATED ALWAYS AS IDENTITY,
    topic              text        NOT NULL,
    unknown_topic      boolean     NOT NULL,
    webhook_id         text COLLATE "C" NOT NULL,
    payload            jsonb       NOT NULL,
    first_delivery_id  bigint      NOT NULL,
    last_delivery_id   bigint      NOT NULL,
    deliveries         integer     NOT NULL DEFAULT 1,
    received_at        timestamptz NOT NULL DEFAULT now(),
    last_received_at   timestamptz NOT NULL DEFAULT now(),
    loaded_at          timestamptz,
    load_error         text,
    PRIMARY KEY (account_id, event_id),
    UNIQUE (seq)
);
-- What the drain takes next, in arrival order (and what the sensor counts).
CREATE INDEX klaviyo_webhook_inbox_pending_idx ON klaviyo_webhook_inbox (seq)
    WHERE loaded_at IS NULL AND load_error IS NULL AND NOT unknown_topic;
CREATE INDEX klaviyo_webhook_inbox_loaded_idx ON klaviyo_webhook_inbox (loaded_at) WHERE loaded_at IS NOT NULL;

COMMENT ON TABLE klaviyo_webhook_deliveries IS 'Klaviyo system webhook requests the receiver verified and stored, one row each (redeliveries included).';
COMMENT ON COLUMN klaviyo_webhook_deliveries.id IS 'Arrival number of the delivery.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.account_id IS 'Klaviyo account the events belong to (meta.klaviyo_account_id).';
COMMENT ON COLUMN klaviyo_webhook_deliveries.webhook_id IS 'Klaviyo webhook that sent it (Klaviyo-Webhook-Id, equal to meta.klaviyo_webhook_id).';
COMMENT ON COLUMN klaviyo_webhook_deliveries.sent_at IS 'When Klaviyo sent the request (its signed Klaviyo-Timestamp header), UTC.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.meta IS 'The body''s meta object as Klaviyo sent it (account, webhook id, timestamp, version).';
COMMENT ON COLUMN klaviyo_webhook_deliveries.body_sha256 IS 'SHA-256 of the raw body, hex: the same body redelivered has the same digest.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.body_bytes IS 'Size of the raw body in bytes.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.items IS 'Items in the body''s data array.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.new_events IS 'Events this delivery added to the inbox.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.repeated_events IS 'Events already in the inbox (a redelivery or an overlap): counted there, not added.';
COMMENT ON COLUMN klaviyo_webhook_deliveries.unknown_topic_events IS 'Events whose topic is not an event topic (stored, flagged, not loaded).';
COMMENT ON COLUMN klaviyo_webhook_deliveries.received_at IS 'When the receiver stored the delivery.';

COMMENT ON TABLE klaviyo_webhook_inbox IS 'Events received by Klaviyo system webhook, one row per event (account, event id), waiting for or done with their load into klaviyo_events.';
COMMENT ON COLUMN klaviyo_webhook_inbox.account_id IS 'Klaviyo account (meta.klaviyo_account_id).';
COMMENT ON COLUMN klaviyo_webhook_inbox.event_id IS 'The event''s id: the item''s external_id (Klaviyo: "ID of the event"), equal to payload.data.id and to klaviyo_events.id.';
COMMENT ON COLUMN klaviyo_webhook_inbox.seq IS 'Arrival order of the event''s first delivery; the drain takes pending rows in this order.';
COMMENT ON COLUMN klaviyo_webhook_inbox.topic IS 'Webhook topic of the event, e.g. event:klaviyo.sent_sms.';
COMMENT ON COLUMN klaviyo_webhook_inbox.unknown_topic IS 'True when the topic is not an event topic (event:...): the row is kept for inspection and never loaded.';
COMMENT ON COLUMN klaviyo_webhook_inbox.webhook_id IS 'Klaviyo webhook that first delivered the event.';
COMMENT ON COLUMN klaviyo_webhook_inbox.payload IS 'The item''s payload as Klaviyo sent it, shaped like GET /api/events/{id} ({"data": event resource, ...}); NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_webhook_inbox.first_delivery_id IS 'The delivery (klaviyo_webhook_deliveries.id) that first brought the event.';
COMMENT ON COLUMN klaviyo_webhook_inbox.last_delivery_id IS 'The latest delivery that brought the event again.';
COMMENT ON COLUMN klaviyo_webhook_inbox.deliveries IS 'How many deliveries brought the event (more than one: Klaviyo redelivered it).';
COMMENT ON COLUMN klaviyo_webhook_inbox.received_at IS 'When the event first arrived.';
COMMENT ON COLUMN klaviyo_webhook_inbox.last_received_at IS 'When the event last arrived.';
COMMENT ON COLUMN klaviyo_webhook_inbox.loaded_at IS 'When the event was loaded into klaviyo_events (in the same transaction); NULL while pending.';
COMMENT ON COLUMN klaviyo_webhook_inbox.load_error IS 'Why the events transform rejected the event (it stays out of klaviyo_events); NULL otherwise.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        -- The default privileges of 006 gave it SELECT on every new table: not on these.
        REVOKE ALL ON klaviyo_webhook_deliveries, klaviyo_webhook_inbox FROM klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi keeps its default access to the webhook inbox: the migrating user may not revoke it';
END
$$;
