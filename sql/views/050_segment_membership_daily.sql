-- Segment and list membership per account day, rebuilt from the member rows (klaviyo_list_members,
-- klaviyo_segment_members: joined_group_at, left_at): for every list and segment, one row per day from its first
-- join to today, with the members at the end of the day and those who joined and left that day. A member who
-- joined on day 2 and left on day 5 counts on days 2, 3 and 4.
--
-- Days are the account's, as the report statistics count them: its time zone in klaviyo_accounts (every sync
-- records it); for an account not recorded there, the setting klaviyo.account_timezone (`ALTER DATABASE ... SET
-- klaviyo.account_timezone = 'America/New_York'`, or per role), else UTC.
--
-- How it differs from klaviyo_segment_growth (030), which shows Klaviyo's segment series report:
-- - that one is Klaviyo's own count of every profile that was a member each day (segments only, from
--   2023-06-01, on the days the statistics loaded); this one counts the member rows the pipeline holds, for
--   lists too and on every day since the first join;
-- - the member rows keep each profile's latest join only: a member who left and came back counts from the
--   later join, and a profile that left before the members were first read is not known at all, so earlier
--   days can count fewer members than Klaviyo did;
-- - left_at is when a full listing first missed the profile (it left before then, after it was last seen):
--   a departure shows on the day of that listing, up to the listing interval (a day by default) late;
-- - a member a listing found but no read has returned yet (joined_group_at NULL) is not counted.

CREATE OR REPLACE VIEW klaviyo_segment_membership_daily AS
WITH members AS (
    SELECT account_id, 'list' AS group_type, list_id AS group_id, joined_group_at, left_at
    FROM klaviyo_list_members
    UNION ALL
    SELECT account_id, 'segment' AS group_type, segment_id AS group_id, joined_group_at, left_at
    FROM klaviyo_segment_members
), spells AS (
    SELECT m.account_id, m.group_type, m.group_id, z.tz, (m.joined_group_at AT TIME ZONE z.tz)::date AS joined_day,
           (m.left_at AT TIME ZONE z.tz)::date AS left_day
    FROM members m
    LEFT JOIN klaviyo_accounts a ON a.account_id = m.account_id
    CROSS JOIN LATERAL (
        SELECT COALESCE(a.timezone, NULLIF(current_setting('klaviyo.account_timezone', true), ''), 'UTC') AS tz
    ) z
    WHERE m.joined_group_at IS NOT NULL
), joins AS (
    SELECT account_id, group_type, group_id, joined_day AS day, count(*) AS n
    FROM spells
    GROUP BY account_id, group_type, group_id, joined_day
), leaves AS (
    SELECT account_id, group_type, group_id, left_day AS day, count(*) AS n
    FROM spells
    WHERE left_day IS NOT NULL
    GROUP BY account_id, group_type, group_id, left_day
), days AS (
    SELECT g.account_id, g.group_type, g.group_id, d.day::date AS day
    FROM (SELECT account_id, group_type, group_id, min(tz) AS tz, min(joined_day) AS first_day
          FROM spells GROUP BY account_id, group_type, group_id) g
    CROSS JOIN LATERAL generate_series(
        g.first_day::timestamp, (now() AT TIME ZONE g.tz)::date::timestamp, interval '1 day') AS d(day)
)
SELECT d.account_id, d.group_type, d.group_id, COALESCE(l.name, s.name) AS group_name,
       COALESCE(l.deleted_at, s.deleted_at) IS NOT NULL AS group_deleted, d.day,
       sum(COALESCE(j.n, 0) - COALESCE(x.n, 0)) OVER (
           PARTITION BY d.account_id, d.group_type, d.group_id ORDER BY d.day) AS members,
       COALESCE(j.n, 0) AS members_joined, COALESCE(x.n, 0) AS members_left
FROM days d
LEFT JOIN joins j ON j.account_id = d.account_id AND j.group_type = d.group_type AND j.group_id = d.group_id
    AND j.day = d.day
LEFT JOIN leaves x ON x.account_id = d.account_id AND x.group_type = d.group_type AND x.group_id = d.group_id
    AND x.day = d.day
LEFT JOIN klaviyo_lists l ON d.group_type = 'list' AND l.account_id = d.account_id AND l.id = d.group_id
LEFT JOIN klaviyo_segments s ON d.group_type = 'segment' AND s.account_id = d.account_id AND s.id = d.group_id;

COMMENT ON VIEW klaviyo_segment_membership_daily IS 'Members of each segment and list per account day (its time zone in klaviyo_accounts), rebuilt from the member rows'' joined_group_at and left_at, from the first join to today. Unlike klaviyo_segment_growth (Klaviyo''s report), it covers lists and every day, but knows only each member''s latest join and sees a departure when a listing does.';
COMMENT ON COLUMN klaviyo_segment_membership_daily.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_segment_membership_daily.group_type IS 'list or segment.';
COMMENT ON COLUMN klaviyo_segment_membership_daily.group_id IS 'The list (klaviyo_lists.id) or segment (klaviyo_segments.id).';
COMMENT ON COLUMN klaviyo_segment_membership_daily.group_name IS 'List or segment name (NULL if it is not loaded).';
COMMENT ON COLUMN klaviyo_segment_membership_daily.group_deleted IS 'Whether the list or segment is gone from Klaviyo (its members left it then).';
COMMENT ON COLUMN klaviyo_segment_membership_daily.day IS 'Account day, from the group''s first join to today.';
COMMENT ON COLUMN klaviyo_segment_membership_daily.members IS 'Members at the end of the day: joined on or before it and not left by then (a member who left that day is not counted).';
COMMENT ON COLUMN klaviyo_segment_membership_daily.members_joined IS 'Members whose latest join (joined_group_at) fell on the day.';
COMMENT ON COLUMN klaviyo_segment_membership_daily.members_left IS 'Members found gone (left_at) on the day: a listing that day no longer found them.';

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'klaviyo_bi') THEN
        GRANT SELECT ON klaviyo_segment_membership_daily TO klaviyo_bi;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'klaviyo_bi was not granted klaviyo_segment_membership_daily: the migrating user may not grant on it';
END
$$;
