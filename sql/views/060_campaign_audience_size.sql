-- Who each campaign is sent to: its included and excluded lists and segments (klaviyo_campaign_audiences) with
-- their current member counts, and per campaign an estimate of its audience.
--   klaviyo_campaign_audience_members  one row per campaign and list or segment it includes or excludes;
--   klaviyo_campaign_audience_size     one row per campaign: the sums and the estimate.
-- A group's members are Klaviyo's count (member_count: profile_count, or for segments the report's
-- total_members, whichever was read later), else the live member rows counted here (left_at NULL). Profiles can
-- be in several groups and the warehouse keeps no overlap figure, so the estimate is arithmetic on counts:
-- the sum of the included groups is an upper bound (an overlap, or an exclusion, only lowers the true figure);
-- included minus excluded is an estimate, not a bound (it is too high when included groups overlap, too low
-- when excluded profiles were not included anyway).

CREATE OR REPLACE VIEW klaviyo_campaign_audience_members AS
WITH live AS (
    SELECT account_id, list_id AS group_id, count(*) AS n
    FROM klaviyo_list_members WHERE left_at IS NULL GROUP BY account_id, list_id
    UNION ALL
    SELECT account_id, segment_id AS group_id, count(*) AS n
    FROM klaviyo_segment_members WHERE left_at IS NULL GROUP BY account_id, segment_id
)
SELECT ca.account_id, ca.campaign_id, c.name AS campaign_name, ca.inclusion, ca.audience_id,
       CASE WHEN l.id IS NOT NULL THEN 'list' WHEN s.id IS NOT NULL THEN 'segment' END AS audience_type,
       COALESCE(l.name, s.name) AS audience_name,
       COALESCE(l.deleted_at, s.deleted_at) IS NOT NULL AS audience_deleted,
       COALESCE(l.member_count, s.member_count) AS member_count,
       COALESCE(l.member_count_at, s.member_count_at) AS member_count_at,
       COALESCE(m.n, 0) AS live_members,
       CASE
           WHEN COALESCE(l.deleted_at, s.deleted_at) IS NOT NULL THEN 0
           WHEN l.id IS NULL AND s.id IS NULL THEN NULL
           ELSE COALESCE(l.member_count, s.member_count, m.n, 0)
       END AS members
FROM klaviyo_campaign_audiences ca
JOIN klaviyo_campaigns c ON c.account_id = ca.account_id AND c.id = ca.campaign_id
LEFT JOIN klaviyo_lists l ON l.account_id = ca.account_id AND l.id = ca.audience_id
LEFT JOIN klaviyo_segments s ON s.account_id = ca.account_id AND s.id = ca.audience_id
LEFT JOIN live m ON m.account_id = ca.account_id AND m.group_id = ca.audience_id
WHERE ca.deleted_at IS NULL AND c.deleted_at IS NULL;

CREATE OR REPLACE VIEW klaviyo_campaign_audience_size AS
WITH sums AS (
    SELECT account_id, campaign_id,
           count(*) FILTER (WHERE inclusion = 'included') AS included_groups,
           count(*) FILTER (WHERE inclusion = 'excluded') AS excluded_groups,
           count(*) FILTER (WHERE members IS NULL) AS unknown_groups,
           sum(members) FILTER (WHERE inclusion = 'included') AS included_members,
           sum(members) FILTER (WHERE inclusion = 'excluded') AS excluded_members,
           max(members) FILTER (WHERE inclusion = 'included') AS largest_included
    FROM klaviyo_campaign_audience_members
    GROUP BY account_id, campaign_id
)
SELECT c.account_id, c.id AS campaign_id, c.name AS campaign_name, c.channel, c.status, c.send_time,
       COALESCE(g.included_groups, 0) AS included_groups, COALESCE(g.excluded_groups, 0) AS excluded_groups,
       COALESCE(g.unknown_groups, 0) AS unknown_groups,
       CASE WHEN COALESCE(g.unknown_groups, 0) = 0 THEN COALESCE(g.included_members, 0) END AS included_members,
       CASE WHEN COALESCE(g.unknown_groups, 0) = 0 THEN COALESCE(g.excluded_members, 0) END AS excluded_members,
       CASE WHEN COALESCE(g.unknown_groups, 0) = 0 THEN COALESCE(g.included_members, 0) END AS audience_upper_bound,
       CASE WHEN COALESCE(g.unknown_groups, 0) = 0
            THEN greatest(COALESCE(g.included_members, 0) - COALESCE(g.excluded_members, 0), 0) END
           AS estimated_audience,
       CASE WHEN COALESCE(g.unknown_groups, 0) = 0
            THEN greatest(COALESCE(g.largest_included, 0) - COALESCE(g.excluded_members, 0), 0) END
           AS audience_lower_bound,
       c.recipients
FROM klaviyo_campaigns c
LEFT JOIN sums g ON g.account_id = c.account_id AND g.campaign_id = c.id
WHERE c.deleted_at IS NULL;

COMMENT ON VIEW klaviyo_campaign_audience_members IS 'Each live campaign''s included and excluded lists and segments with their current member counts.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.campaign_id IS 'Campaign (klaviyo_campaigns.id).';
COMMENT ON COLUMN klaviyo_campaign_audience_members.campaign_name IS 'Campaign name.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.inclusion IS 'included: the campaign is sent to the group''s members; excluded: they are left out.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.audience_id IS 'The list or segment id.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.audience_type IS 'list or segment; NULL when neither is loaded with that id.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.audience_name IS 'List or segment name (NULL if it is not loaded).';
COMMENT ON COLUMN klaviyo_campaign_audience_members.audience_deleted IS 'Whether the list or segment is gone from Klaviyo.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.member_count IS 'Klaviyo''s member count of the group (klaviyo_lists or klaviyo_segments.member_count); NULL if not read.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.member_count_at IS 'When member_count was read from Klaviyo''s profile_count (NULL: from the segment report, or not read).';
COMMENT ON COLUMN klaviyo_campaign_audience_members.live_members IS 'Member rows of the group that have not left (left_at NULL), as the last member sync found them.';
COMMENT ON COLUMN klaviyo_campaign_audience_members.members IS 'The count the estimates use: member_count, else live_members; 0 for a deleted group; NULL when the group is not loaded.';

COMMENT ON VIEW klaviyo_campaign_audience_size IS 'One row per live campaign: how many lists and segments it includes and excludes, their summed members, and its audience estimated from those counts (the sum of the included groups is an upper bound: profiles overlap).';
COMMENT ON COLUMN klaviyo_campaign_audience_size.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.campaign_id IS 'Campaign (klaviyo_campaigns.id).';
COMMENT ON COLUMN klaviyo_campaign_audience_size.campaign_name IS 'Campaign name.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.channel IS 'Message channel: email, sms or mobile_push.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.status IS 'Campaign status.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.send_time IS 'When the campaign was (or will be) sent.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.included_groups IS 'Lists and segments the campaign is sent to.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.excluded_groups IS 'Lists and segments whose members it leaves out.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.unknown_groups IS 'Audience ids that are no loaded list or segment: while any, the member figures are NULL.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.included_members IS 'Members of the included groups summed (a profile in two of them counts twice).';
COMMENT ON COLUMN klaviyo_campaign_audience_size.excluded_members IS 'Members of the excluded groups summed.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.audience_upper_bound IS 'Upper bound of the audience: the included groups'' members summed (overlaps and exclusions only lower it).';
COMMENT ON COLUMN klaviyo_campaign_audience_size.estimated_audience IS 'Included minus excluded members (at least 0): an estimate from counts, at most audience_upper_bound; too high when included groups overlap, too low when excluded profiles were not included anyway.';
COMMENT ON COLUMN klaviyo_campaign_audience_size.audience_lower_bound IS 'Lower bound of the audience: the largest included group less every excluded member (at least 0).';
COMMENT ON COLUMN klaviyo_campaign_audience_size.recipients IS 'Recipients Klaviyo reported for the campaign once sent (NULL before), to compare with the estimate.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_campaign_audience_members, klaviyo_campaign_audience_size TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted the campaign audience views: the migrating user may not grant on them';
END
$$;
