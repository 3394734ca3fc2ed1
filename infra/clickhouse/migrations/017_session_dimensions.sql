-- The session breakdowns of compacted days summed once.
--
-- A breakdown of sessions (entry and exit pages, referrers, UTM tags,
-- browsers, systems, devices, countries) read every session of its days
-- from `rollup_session_days` and counted them by value: 1.4 million rows
-- per call on a day of 10 million events, 400-500 ms whether the day was
-- compacted or not, eight times per dashboard refresh. The day tier now also
-- sums each day's sessions by (dimension, value, start hour, bot), as
-- `rollup_session_starts` does for the overview; reports read those sums for
-- the hours of clean days a period holds whole and only the other sessions
-- one by one (chalicelib.stats.sql).
--
-- * `rollup_session_dims`: the sums, and for each value one row of the whole
--   day (start hour 1970-01-01 00:00), which a period holding the day whole
--   reads instead: one visitor sketch per value and day to merge, not one
--   per start hour. Visitors are `uniqCombined(14)` sketches, as the pages'
--   are. The values of a day change between generations (an exit page a
--   late event replaced has no session left), so a generation also writes a
--   row of zeros for each key an older generation of the day wrote and it
--   did not: no stale row survives it. Sorted by start hour before day, in
--   small granules, so that the day rows of a month lie together and a read
--   with FINAL (which reads every column of the granules it keeps before it
--   filters) doesn't open the hourly rows' sketches: 238 -> 33 ms for a
--   month's entry pages on the bench data.
-- * `rollup_day_gens.session_dims`: 1 on a day generation written with those
--   rows. Days compacted before this have none: neither reports nor
--   compaction count their generations, so those days are read from their
--   hourly rows, which is exact, until the day tier writes them again (it
--   takes them as never written, oldest last, in its row budget).
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_dims
(
    project_id LowCardinality(String),
    day        Date COMMENT 'UTC day the sessions ran on',
    dimension  LowCardinality(String) COMMENT 'the rollup_session_days column: entry_page, country, ...',
    start_hour DateTime('UTC') COMMENT 'hour the sessions started in',
    is_bot     UInt8,
    value      String,
    gen        UInt64,
    sessions   UInt64,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, dimension, start_hour, day, is_bot, value)
SETTINGS index_granularity = 256;

ALTER TABLE ${DATABASE}.rollup_day_gens
    ADD COLUMN IF NOT EXISTS session_dims UInt8 DEFAULT 0
    COMMENT '1: the day has its rollup_session_dims rows';
