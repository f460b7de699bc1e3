-- Two entities added through the catalogue: email templates (windowed on `updated`) and tag groups (a
-- snapshot: Klaviyo gives them no timestamp), so that campaign messages' template_id and tags' tag_group_id
-- join to something.
CREATE TABLE klaviyo_templates (
    id               text COLLATE "C" NOT NULL,
    account_id       text COLLATE "C" NOT NULL,
    name             text,
    editor_type      text,
    html             text,
    text             text,
    amp              text,
    created_date     timestamptz,
    updated_date     timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX klaviyo_templates_name_idx ON klaviyo_templates (name);

CREATE TABLE klaviyo_tag_groups (
    id               text COLLATE "C" NOT NULL,
    account_id       text COLLATE "C" NOT NULL,
    name             text,
    exclusive        boolean,
    is_default       boolean,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    deleted_at       timestamptz,
    PRIMARY KEY (account_id, id)
);

COMMENT ON TABLE klaviyo_templates IS 'Klaviyo email templates (GET /api/templates), by updated. Join klaviyo_campaign_messages.template_id.';
COMMENT ON COLUMN klaviyo_templates.id IS 'Klaviyo template id.';
COMMENT ON COLUMN klaviyo_templates.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_templates.name IS 'Template name.';
COMMENT ON COLUMN klaviyo_templates.editor_type IS 'Editor: SYSTEM_DRAGGABLE (drag and drop), SIMPLE (rich text), CODE (custom HTML) or USER_DRAGGABLE (hybrid).';
COMMENT ON COLUMN klaviyo_templates.html IS 'The rendered HTML of the template.';
COMMENT ON COLUMN klaviyo_templates.text IS 'The plain-text version, when it has one.';
COMMENT ON COLUMN klaviyo_templates.amp IS 'The AMP version, when AMP email is enabled.';
COMMENT ON COLUMN klaviyo_templates.created_date IS 'When the template was created in Klaviyo (UTC).';
COMMENT ON COLUMN klaviyo_templates.updated_date IS 'When the template was last updated in Klaviyo (UTC); guards upserts.';
COMMENT ON COLUMN klaviyo_templates.metadata IS 'The resource as Klaviyo sent it (attributes and relationships), new fields included.';
COMMENT ON COLUMN klaviyo_templates.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_templates.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_templates.last_synced_at IS 'When a sync last wrote or confirmed this row.';
COMMENT ON COLUMN klaviyo_templates.deleted_at IS 'When the reconciliation found the template gone from Klaviyo; NULL while it exists.';

COMMENT ON TABLE klaviyo_tag_groups IS 'Klaviyo tag groups (GET /api/tag-groups): a snapshot each run. Join klaviyo_tags.tag_group_id.';
COMMENT ON COLUMN klaviyo_tag_groups.id IS 'Klaviyo tag group id.';
COMMENT ON COLUMN klaviyo_tag_groups.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_tag_groups.name IS 'Tag group name.';
COMMENT ON COLUMN klaviyo_tag_groups.exclusive IS 'Whether a resource can carry only one tag of this group.';
COMMENT ON COLUMN klaviyo_tag_groups.is_default IS 'Whether this is the account''s Default Tag Group (Klaviyo''s attribute `default`).';
COMMENT ON COLUMN klaviyo_tag_groups.metadata IS 'The resource as Klaviyo sent it, new fields included.';
COMMENT ON COLUMN klaviyo_tag_groups.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_tag_groups.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_tag_groups.last_synced_at IS 'When a sync last wrote or confirmed this row.';
COMMENT ON COLUMN klaviyo_tag_groups.deleted_at IS 'When the reconciliation found the group gone from Klaviyo; NULL while it exists.';
