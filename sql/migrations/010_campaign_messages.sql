-- Campaign messages: what each campaign sent (subject, preview text, sender; SMS and push bodies) and when.
-- Read with their campaigns (`include=campaign-messages` on the campaigns listing: no extra request), so a
-- message lands whenever its campaign is read. Joins klaviyo_campaign_stats on campaign_message_id.
CREATE TABLE klaviyo_campaign_messages (
    id                 text COLLATE "C" NOT NULL,
    account_id         text COLLATE "C" NOT NULL,
    campaign_id        text COLLATE "C",
    channel            text,
    label              text,
    subject            text,
    preview_text       text,
    from_email         text,
    from_label         text,
    reply_to_email     text,
    title              text,
    body               text,
    template_id        text COLLATE "C",
    send_time          timestamptz,
    send_time_is_local boolean,
    created_date       timestamptz,
    updated_date       timestamptz,
    metadata           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    last_synced_at     timestamptz,
    deleted_at         timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_campaign_messages_campaign_idx ON klaviyo_campaign_messages (campaign_id);

COMMENT ON TABLE klaviyo_campaign_messages IS 'Klaviyo campaign messages: current state per account and id, read with their campaigns.';
COMMENT ON COLUMN klaviyo_campaign_messages.id IS 'Klaviyo''s id for the message (the campaign_message_id of the campaign reports).';
COMMENT ON COLUMN klaviyo_campaign_messages.account_id IS 'Klaviyo account the message belongs to (from the API key''s account).';
COMMENT ON COLUMN klaviyo_campaign_messages.campaign_id IS 'Campaign the message belongs to (klaviyo_campaigns.id).';
COMMENT ON COLUMN klaviyo_campaign_messages.channel IS 'Message channel: email, sms or mobile_push.';
COMMENT ON COLUMN klaviyo_campaign_messages.label IS 'Label (name) of the message; Klaviyo gives one for email.';
COMMENT ON COLUMN klaviyo_campaign_messages.subject IS 'Email subject line; NULL for other channels.';
COMMENT ON COLUMN klaviyo_campaign_messages.preview_text IS 'Email preview text.';
COMMENT ON COLUMN klaviyo_campaign_messages.from_email IS 'Email sender address.';
COMMENT ON COLUMN klaviyo_campaign_messages.from_label IS 'Email sender name.';
COMMENT ON COLUMN klaviyo_campaign_messages.reply_to_email IS 'Email reply-to address.';
COMMENT ON COLUMN klaviyo_campaign_messages.title IS 'Push notification title; NULL for other channels.';
COMMENT ON COLUMN klaviyo_campaign_messages.body IS 'SMS or push notification body; NULL for email.';
COMMENT ON COLUMN klaviyo_campaign_messages.template_id IS 'Template the message uses (email), when Klaviyo names it.';
COMMENT ON COLUMN klaviyo_campaign_messages.send_time IS 'Earliest of the message''s send times (UTC); NULL until it is scheduled.';
COMMENT ON COLUMN klaviyo_campaign_messages.send_time_is_local IS 'Whether that send time is in each recipient''s local time.';
COMMENT ON COLUMN klaviyo_campaign_messages.created_date IS 'When the message was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_campaign_messages.updated_date IS 'When the message was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_campaign_messages.metadata IS 'Raw JSON:API resource (attributes, including every send time, and relationships) as received; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_campaign_messages.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_campaign_messages.updated_at IS 'When this warehouse row was last changed by a sync.';
COMMENT ON COLUMN klaviyo_campaign_messages.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_campaign_messages.deleted_at IS 'When the message''s campaign was found missing from Klaviyo (soft delete); NULL while it exists.';
