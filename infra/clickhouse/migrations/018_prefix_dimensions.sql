-- The session breakdowns of a day still going: its prefix's sessions summed once.
--
-- Under steady traffic today is never clean, so a session breakdown of it
-- merged every hourly session part of the day one by one: 1.4 million rows
-- per call on the busy bench day, about 500 ms, eight times per dashboard
-- refresh. The prefix tier now also sums the sessions of its hours by
-- (dimension, value, end slot, bot), as the day tier does for whole days
-- (migration 017).
--
-- A session that runs on past the prefix may still change its values (a
-- later page view is its exit page), and a visitor sketch can't take one
-- back. So the rows are keyed by when a session's last part in the prefix
-- ended (`end_slot`: its minute in the prefix's last hour, its hour before
-- that): a report finds the earliest slot of the sessions running on past
-- the prefix, reads the sums of the slots before it and every session ended
-- from it on one by one (chalicelib.stats.sql). Under steady traffic that is
-- the last minutes of the prefix.
--
-- * `rollup_prefix_dims`: the sums. A generation also writes a row of zeros
--   for each key an older generation of the same prefix wrote and it did
--   not (a value no session has left), as migration 017 does for days.
-- * `rollup_prefix_gens.session_dims`: 1 on a prefix generation written with
--   those rows. Prefixes written before this have none: neither reports nor
--   compaction count them, so the next round writes the prefix again, and
--   meanwhile its day is read hour by hour, which is exact.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_prefix_dims
(
    project_id LowCardinality(String),
    through    DateTime('UTC') COMMENT 'the prefix: the hours of its UTC day before this one',
    dimension  LowCardinality(String) COMMENT 'the rollup_session_days column: entry_page, country, ...',
    end_slot   DateTime('UTC') COMMENT 'when the sessions ended within the prefix: the minute in its last hour, the hour before',
    is_bot     UInt8,
    value      String,
    gen        UInt64,
    sessions   UInt64 COMMENT 'sessions as the prefix hours show them',
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(through)
ORDER BY (project_id, through, dimension, end_slot, is_bot, value)
SETTINGS index_granularity = 256;

ALTER TABLE ${DATABASE}.rollup_prefix_gens
    ADD COLUMN IF NOT EXISTS session_dims UInt8 DEFAULT 0
    COMMENT '1: the prefix has its rollup_prefix_dims rows';
