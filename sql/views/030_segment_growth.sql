-- Segment membership over time.

CREATE OR REPLACE VIEW klaviyo_segment_growth AS
SELECT s.account_id, s.segment_id, g.name AS segment_name, s.day, s.total_members, s.members_added,
       s.members_removed, s.net_members_changed,
       s.total_members - first_value(s.total_members) OVER (
           PARTITION BY s.account_id, s.segment_id ORDER BY s.day) AS growth_since_first_day
FROM klaviyo_segment_stats_daily s
LEFT JOIN klaviyo_segments g ON g.account_id = s.account_id AND g.id = s.segment_id;

COMMENT ON VIEW klaviyo_segment_growth IS 'Segment members per day, with growth since the first loaded day.';
COMMENT ON COLUMN klaviyo_segment_growth.account_id IS 'Klaviyo account.';
COMMENT ON COLUMN klaviyo_segment_growth.segment_id IS 'Segment id.';
COMMENT ON COLUMN klaviyo_segment_growth.segment_name IS 'Segment name (NULL if the segment is not loaded).';
COMMENT ON COLUMN klaviyo_segment_growth.day IS 'Day.';
COMMENT ON COLUMN klaviyo_segment_growth.total_members IS 'Members at the end of the day.';
COMMENT ON COLUMN klaviyo_segment_growth.members_added IS 'Members added that day.';
COMMENT ON COLUMN klaviyo_segment_growth.members_removed IS 'Members removed that day.';
COMMENT ON COLUMN klaviyo_segment_growth.net_members_changed IS 'Added minus removed that day.';
COMMENT ON COLUMN klaviyo_segment_growth.growth_since_first_day IS 'total_members minus total_members on the first loaded day.';
