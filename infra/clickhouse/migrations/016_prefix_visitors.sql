-- The visitors of a day prefix in one state.
--
-- The overview of a day still going merged the visitors of its prefix from
-- one `uniq` state per hour the sessions started in (46 on the busy bench
-- day, 30 ms of the report). The prefix tier now also writes, beside those
-- rows, one row per (prefix, bot) at the start hour 1970-01-01 00:00 with no
-- sums and the visitors of every session of the prefix; a report of a period
-- that holds the prefix's day whole reads that state alone.
--
-- Prefixes written before this have no such row. Their generations are not
-- flagged, and neither reports nor compaction count them: the next round
-- writes the prefix again, and meanwhile its day is read hour by hour, which
-- is exact. A row written by the tier is flagged when it is done.
ALTER TABLE ${DATABASE}.rollup_prefix_gens
    ADD COLUMN IF NOT EXISTS whole_visitors UInt8 DEFAULT 0
    COMMENT '1: the prefix has its visitors row (start hour 1970-01-01 00:00)';
