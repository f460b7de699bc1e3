-- What a flow is made of, who a campaign went to, and what a form shows:
--   klaviyo_flow_actions     each flow's steps, read with their flows (GET /api/flows?include=flow-actions: no
--                            request of their own), a step a re-read flow no longer lists soft-deleted;
--   klaviyo_flow_messages    each sending step's messages (GET /api/flow-actions/{id}/flow-messages), read under
--                            the steps of the flows that changed (the klaviyo/flow_messages asset);
--   klaviyo_campaign_audiences  the lists and segments a campaign is sent to or excludes, from the campaigns read
--                            (their `audiences` attribute: no request of their own), replaced per campaign;
--   klaviyo_form_versions    each form's versions (GET /api/forms/{id}/form-versions), read under the forms that
--                            changed (the klaviyo/form_versions asset).
-- Joins: flow_actions.flow_id -> klaviyo_flows.id; flow_messages.flow_action_id -> flow_actions.id and
-- flow_messages.id = klaviyo_flow_stats_daily.flow_message_id; campaign_audiences.audience_id -> klaviyo_lists.id
-- or klaviyo_segments.id; form_versions.form_id -> klaviyo_forms.id (and form_version_id in form reports).
CREATE TABLE klaviyo_flow_actions (
    id               text COLLATE "C" NOT NULL,
    account_id       text COLLATE "C" NOT NULL,
    flow_id          text COLLATE "C",
    action_type      text,
    status           text,
    settings         jsonb,
    next_action_id   text COLLATE "C",
    definition       jsonb,
    created_date     timestamptz,
    updated_date     timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_flow_actions_flow_idx ON klaviyo_flow_actions (account_id, flow_id);

CREATE TABLE klaviyo_flow_messages (
    id               text COLLATE "C" NOT NULL,
    account_id       text COLLATE "C" NOT NULL,
    flow_action_id   text COLLATE "C",
    flow_id          text COLLATE "C",
    channel          text,
    name             text,
    subject          text,
    preview_text     text,
    from_email       text,
    from_label       text,
    reply_to_email   text,
    title            text,
    body             text,
    template_id      text COLLATE "C",
    created_date     timestamptz,
    updated_date     timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_flow_messages_action_idx ON klaviyo_flow_messages (account_id, flow_action_id);
CREATE INDEX klaviyo_flow_messages_flow_idx ON klaviyo_flow_messages (account_id, flow_id);

CREATE TABLE klaviyo_campaign_audiences (
    account_id       text COLLATE "C" NOT NULL,
    campaign_id      text COLLATE "C" NOT NULL,
    audience_id      text COLLATE "C" NOT NULL,
    inclusion        text        NOT NULL CHECK (inclusion IN ('included', 'excluded')),
    updated_date     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, campaign_id, audience_id, inclusion)
);
-- "Which campaigns went to this list or segment": the key serves the other way round.
CREATE INDEX klaviyo_campaign_audiences_audience_idx ON klaviyo_campaign_audiences (account_id, audience_id);

CREATE TABLE klaviyo_form_versions (
    id                      text COLLATE "C" NOT NULL,
    account_id              text COLLATE "C" NOT NULL,
    form_id                 text COLLATE "C",
    variation_name          text,
    form_type               text,
    status                  text,
    ab_test_variation_name  text,
    created_date            timestamptz,
    updated_date            timestamptz,
    metadata                jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    last_synced_at          timestamptz,
    deleted_at              timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_form_versions_form_idx ON klaviyo_form_versions (account_id, form_id);

COMMENT ON TABLE klaviyo_flow_actions IS 'Klaviyo flow actions (the steps of each flow: sends, delays, splits), read with their flows (include=flow-actions). A step a re-read flow no longer lists gets deleted_at.';
COMMENT ON COLUMN klaviyo_flow_actions.id IS 'Klaviyo flow action id.';
COMMENT ON COLUMN klaviyo_flow_actions.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flow_actions.flow_id IS 'The flow the step belongs to (klaviyo_flows.id).';
COMMENT ON COLUMN klaviyo_flow_actions.action_type IS 'Step type, as Klaviyo''s definition names it: send-email, send-sms, send-mobile-push, time-delay, conditional-split, trigger-split, ab-test, update-profile, ...';
COMMENT ON COLUMN klaviyo_flow_actions.status IS 'Step status: live, draft, manual or disabled (NULL for steps without one, e.g. delays).';
COMMENT ON COLUMN klaviyo_flow_actions.settings IS 'The step''s settings: its definition''s data (delay, split condition, experiment, ...) less the message it sends (see klaviyo_flow_messages).';
COMMENT ON COLUMN klaviyo_flow_actions.next_action_id IS 'The step that follows (definition.links.next); splits name their branches in definition.links.';
COMMENT ON COLUMN klaviyo_flow_actions.definition IS 'The step''s whole definition as Klaviyo encodes it (type, data, links).';
COMMENT ON COLUMN klaviyo_flow_actions.created_date IS 'When the step was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_flow_actions.updated_date IS 'When the step was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_flow_actions.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_flow_actions.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_flow_actions.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_flow_actions.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_flow_actions.deleted_at IS 'When the step was found gone from Klaviyo (its flow no longer lists it, or the flow was deleted); NULL while it exists.';

COMMENT ON TABLE klaviyo_flow_messages IS 'Klaviyo flow messages: what each sending step of a flow sends (GET /api/flow-actions/{id}/flow-messages), read under the steps of the flows that changed.';
COMMENT ON COLUMN klaviyo_flow_messages.id IS 'Klaviyo flow message id (the flow_message_id of the flow reports, klaviyo_flow_stats_daily).';
COMMENT ON COLUMN klaviyo_flow_messages.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_flow_messages.flow_action_id IS 'The step that sends the message (klaviyo_flow_actions.id).';
COMMENT ON COLUMN klaviyo_flow_messages.flow_id IS 'The flow of that step (klaviyo_flows.id), as the step named it when the message was read.';
COMMENT ON COLUMN klaviyo_flow_messages.channel IS 'Message channel as Klaviyo names it (e.g. email, sms, push-notification: the send_channel of the flow reports).';
COMMENT ON COLUMN klaviyo_flow_messages.name IS 'The message''s name in the flow editor.';
COMMENT ON COLUMN klaviyo_flow_messages.subject IS 'Email (or internal alert) subject line; NULL for other channels.';
COMMENT ON COLUMN klaviyo_flow_messages.preview_text IS 'Email preview text.';
COMMENT ON COLUMN klaviyo_flow_messages.from_email IS 'Email sender address.';
COMMENT ON COLUMN klaviyo_flow_messages.from_label IS 'Email sender name.';
COMMENT ON COLUMN klaviyo_flow_messages.reply_to_email IS 'Email reply-to address.';
COMMENT ON COLUMN klaviyo_flow_messages.title IS 'Push notification title; NULL for other channels.';
COMMENT ON COLUMN klaviyo_flow_messages.body IS 'SMS, push or WhatsApp body (or a webhook''s); NULL for email.';
COMMENT ON COLUMN klaviyo_flow_messages.template_id IS 'Template the message uses (klaviyo_templates.id), when it has one.';
COMMENT ON COLUMN klaviyo_flow_messages.created_date IS 'When the message was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_flow_messages.updated_date IS 'When the message was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_flow_messages.metadata IS 'The resource as Klaviyo sent it (attributes, including the whole definition, and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_flow_messages.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_flow_messages.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_flow_messages.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_flow_messages.deleted_at IS 'When the message was found gone from Klaviyo (its step no longer lists it, or the step or flow went); NULL while it exists.';

COMMENT ON TABLE klaviyo_campaign_audiences IS 'The lists and segments each Klaviyo campaign is sent to (included) or excludes, from the campaign''s audiences; replaced whenever the campaign is loaded: an audience it no longer has gets deleted_at.';
COMMENT ON COLUMN klaviyo_campaign_audiences.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_campaign_audiences.campaign_id IS 'The campaign (klaviyo_campaigns.id).';
COMMENT ON COLUMN klaviyo_campaign_audiences.audience_id IS 'A list or segment id (join klaviyo_lists.id or klaviyo_segments.id: Klaviyo does not say which).';
COMMENT ON COLUMN klaviyo_campaign_audiences.inclusion IS 'included: the campaign is sent to its members; excluded: its members are left out.';
COMMENT ON COLUMN klaviyo_campaign_audiences.updated_date IS 'The campaign''s updated_at when the row was read (the version of the campaign it reflects).';
COMMENT ON COLUMN klaviyo_campaign_audiences.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_campaign_audiences.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_campaign_audiences.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_campaign_audiences.deleted_at IS 'When the campaign was read without this audience (or the campaign was deleted); NULL while it has it.';

COMMENT ON TABLE klaviyo_form_versions IS 'Klaviyo form versions: the variations of each sign-up form (GET /api/forms/{id}/form-versions), read under the forms that changed.';
COMMENT ON COLUMN klaviyo_form_versions.id IS 'Klaviyo form version id (the form_version_id of the form reports).';
COMMENT ON COLUMN klaviyo_form_versions.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_form_versions.form_id IS 'The form (klaviyo_forms.id).';
COMMENT ON COLUMN klaviyo_form_versions.variation_name IS 'The version''s name.';
COMMENT ON COLUMN klaviyo_form_versions.form_type IS 'Form type: popup, embed, flyout, full_page or banner.';
COMMENT ON COLUMN klaviyo_form_versions.status IS 'live (shown on site) or draft.';
COMMENT ON COLUMN klaviyo_form_versions.ab_test_variation_name IS 'The A/B test variation this version is, when the form runs an A/B test; NULL otherwise.';
COMMENT ON COLUMN klaviyo_form_versions.created_date IS 'When the version was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_form_versions.updated_date IS 'When the version was last updated in Klaviyo (UTC); guards upserts so older data never overwrites newer.';
COMMENT ON COLUMN klaviyo_form_versions.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included; NUL characters escaped as \u0000.';
COMMENT ON COLUMN klaviyo_form_versions.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_form_versions.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_form_versions.last_synced_at IS 'When a sync last wrote this row.';
COMMENT ON COLUMN klaviyo_form_versions.deleted_at IS 'When the version was found gone from Klaviyo (its form no longer lists it, or the form was deleted); NULL while it exists.';

-- The BI role reads them (006's default privileges already grant it; said again in case another role runs
-- this migration).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_flow_actions, klaviyo_flow_messages, klaviyo_campaign_audiences,
            klaviyo_form_versions TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted SELECT on the new tables: the migrating user may not grant';
END
$$;
