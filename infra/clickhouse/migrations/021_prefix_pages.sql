-- The top pages of a day still going: its prefix's pages summed once.
--
-- Under steady traffic today is never clean, so the top pages of it merged
-- an hourly row per page and hour: on the busy bench day 682 rows and their
-- visitor sketches for the largest project, where the compacted day reads
-- one per page (about 70 ms against 45). The prefix tier now also sums the
-- page rows of its hours, as the day tier does for whole days: page views
-- add up and visitor sketches merge, so nothing runs on past the prefix as
-- sessions do (migration 018).
--
-- * `rollup_prefix_pages`: page views and visitors per (prefix, bot, page).
--   A prefix's hours only gain pages (an erasure deletes every rollup row of
--   its days), so a newer generation writes every key an older one did.
-- * `rollup_prefix_gens.pages`: 1 on a prefix generation written with them.
--   Prefixes written before this have none: neither reports nor compaction
--   count them, so the next round writes the prefix again, and meanwhile its
--   day is read hour by hour, which is exact.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_prefix_pages
(
    project_id LowCardinality(String),
    through    DateTime('UTC') COMMENT 'the prefix: the hours of its UTC day before this one',
    is_bot     UInt8,
    url_path   String,
    gen        UInt64,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(through)
ORDER BY (project_id, through, is_bot, url_path);

ALTER TABLE ${DATABASE}.rollup_prefix_gens
    ADD COLUMN IF NOT EXISTS pages UInt8 DEFAULT 0
    COMMENT '1: the prefix has its rollup_prefix_pages rows';
