-- List and segment members: who is in each list and segment, since when, and when they left. Read from
-- GET /api/lists/{id}/profiles and /api/segments/{id}/profiles (incremental on joined_group_at, one watermark
-- per list or segment in klaviyo_member_sync); removals come from a periodic full listing of the ids
-- (GET .../relationships/profiles). A member is never deleted here: one that Klaviyo no longer lists gets
-- left_at, and a later read that finds it again clears it.
CREATE TABLE klaviyo_list_members (
    account_id       text COLLATE "C" NOT NULL,
    list_id          text COLLATE "C" NOT NULL,
    profile_id       text COLLATE "C" NOT NULL,
    joined_group_at  timestamptz,
    left_at          timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    PRIMARY KEY (account_id, list_id, profile_id)
);
-- "Which lists is this profile in": the key serves the other way round.
CREATE INDEX klaviyo_list_members_profile_idx ON klaviyo_list_members (profile_id);

CREATE TABLE klaviyo_segment_members (
    account_id       text COLLATE "C" NOT NULL,
    segment_id       text COLLATE "C" NOT NULL,
    profile_id       text COLLATE "C" NOT NULL,
    joined_group_at  timestamptz,
    left_at          timestamptz,
    metadata         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    last_synced_at   timestamptz,
    PRIMARY KEY (account_id, segment_id, profile_id)
);
CREATE INDEX klaviyo_segment_members_profile_idx ON klaviyo_segment_members (profile_id);

-- Where each list's and segment's member sync stands: the watermark of its incremental reads and its last
-- full listing (the pipeline's bookkeeping, like klaviyo_sync_status, one row per list or segment).
CREATE TABLE klaviyo_member_sync (
    account_id       text COLLATE "C" NOT NULL,
    entity           text        NOT NULL,
    group_id         text COLLATE "C" NOT NULL,
    watermark        timestamptz,
    last_read_at     timestamptz,
    last_listed_at   timestamptz,
    listed_members   bigint,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, entity, group_id),
    CONSTRAINT klaviyo_member_sync_entity_chk CHECK (entity IN ('list_members', 'segment_members'))
);

-- When member_count was read from Klaviyo's profile_count: for segments the newer of it and the segment
-- report's total_members wins (see the comments below).
ALTER TABLE klaviyo_lists ADD COLUMN member_count_at timestamptz;
ALTER TABLE klaviyo_segments ADD COLUMN member_count_at timestamptz;

COMMENT ON TABLE klaviyo_list_members IS 'Members of each Klaviyo list (GET /api/lists/{id}/profiles), present and past: left_at is NULL while the profile is in the list.';
COMMENT ON COLUMN klaviyo_list_members.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_list_members.list_id IS 'The list (join klaviyo_lists.id).';
COMMENT ON COLUMN klaviyo_list_members.profile_id IS 'The member (join klaviyo_profiles.id).';
COMMENT ON COLUMN klaviyo_list_members.joined_group_at IS 'When the profile most recently joined the list (Klaviyo''s joined_group_at, UTC); guards upserts. NULL only for a member a full listing found that no read has returned yet.';
COMMENT ON COLUMN klaviyo_list_members.left_at IS 'When a full listing of the list''s members began that no longer found the profile (it left before then, after it was last seen); NULL while it is a member.';
COMMENT ON COLUMN klaviyo_list_members.metadata IS 'Attributes Klaviyo sent for the member beyond joined_group_at (the sync asks only for joined_group_at: normally empty).';
COMMENT ON COLUMN klaviyo_list_members.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_list_members.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_list_members.last_synced_at IS 'When a sync last wrote this row (a read that found it unchanged does not).';

COMMENT ON TABLE klaviyo_segment_members IS 'Members of each Klaviyo segment (GET /api/segments/{id}/profiles), present and past: left_at is NULL while the profile is in the segment.';
COMMENT ON COLUMN klaviyo_segment_members.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_segment_members.segment_id IS 'The segment (join klaviyo_segments.id).';
COMMENT ON COLUMN klaviyo_segment_members.profile_id IS 'The member (join klaviyo_profiles.id).';
COMMENT ON COLUMN klaviyo_segment_members.joined_group_at IS 'When the profile most recently joined the segment (Klaviyo''s joined_group_at, UTC); guards upserts. NULL only for a member a full listing found that no read has returned yet.';
COMMENT ON COLUMN klaviyo_segment_members.left_at IS 'When a full listing of the segment''s members began that no longer found the profile (it left before then, after it was last seen); NULL while it is a member.';
COMMENT ON COLUMN klaviyo_segment_members.metadata IS 'Attributes Klaviyo sent for the member beyond joined_group_at (the sync asks only for joined_group_at: normally empty).';
COMMENT ON COLUMN klaviyo_segment_members.created_at IS 'When this warehouse row was first inserted.';
COMMENT ON COLUMN klaviyo_segment_members.updated_at IS 'When this warehouse row was last changed.';
COMMENT ON COLUMN klaviyo_segment_members.last_synced_at IS 'When a sync last wrote this row (a read that found it unchanged does not).';

COMMENT ON TABLE klaviyo_member_sync IS 'Where the member sync of each list and segment stands: its watermark on joined_group_at and its last full listing.';
COMMENT ON COLUMN klaviyo_member_sync.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_member_sync.entity IS 'list_members or segment_members.';
COMMENT ON COLUMN klaviyo_member_sync.group_id IS 'The list or segment id.';
COMMENT ON COLUMN klaviyo_member_sync.watermark IS 'The latest joined_group_at loaded; the next incremental read starts there less a lookback. Moves only when a read of the group completes.';
COMMENT ON COLUMN klaviyo_member_sync.last_read_at IS 'When the last complete read of the group''s members began.';
COMMENT ON COLUMN klaviyo_member_sync.last_listed_at IS 'When the last complete full listing of the group''s members began (what left_at is measured by).';
COMMENT ON COLUMN klaviyo_member_sync.listed_members IS 'Members that listing found.';
COMMENT ON COLUMN klaviyo_member_sync.updated_at IS 'When this row was last changed.';

COMMENT ON COLUMN klaviyo_lists.member_count IS 'Profiles in the list: Klaviyo''s profile_count (GET /api/lists/{id}?additional-fields[list]=profile_count), read at member_count_at.';
COMMENT ON COLUMN klaviyo_lists.member_count_at IS 'When member_count was read from Klaviyo''s profile_count; NULL: not read yet.';
COMMENT ON COLUMN klaviyo_segments.member_count IS 'Profiles in the segment: the newer of two readings, Klaviyo''s profile_count (GET /api/segments/{id}?additional-fields[segment]=profile_count, read by the segment_members sync at member_count_at) and the segment series report''s latest total_members (as of the end of its account day, or when it was fetched if earlier; written by entity_summaries).';
COMMENT ON COLUMN klaviyo_segments.member_count_at IS 'When member_count was read from Klaviyo''s profile_count; NULL when the report''s total_members is the newer reading (or none was read).';

-- The BI role reads every table of the schema (migration 006's default privileges cover tables made by the
-- role that ran it); granted here too, for a migrating role other than that one.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_list_members, klaviyo_segment_members, klaviyo_member_sync TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted the member tables: the migrating user may not grant on them';
END
$$;
