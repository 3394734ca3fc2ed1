-- Clicks, errors and custom events counted by the hour, so their reports
-- stop reading every such event of the period.
--
-- The clicks, errors and custom events reports read `events FINAL` over
-- their whole period: on the busy bench day 280 ms per dashboard refresh for
-- clicks alone (2.1 M clicks' `props`), and a month of them for a 30-day
-- report, whether or not anything changed. The hour tier now also writes,
-- for every hour it compacts, its clicks and errors grouped by `props` (a
-- click's element, an error's message, source and stack) and its custom
-- events by name: reports read these rows for the clean hours and only the
-- rest of the period raw.
--
-- * `rollup_event_hours`: per (project, hour, type, bot, props) the events,
--   the visitors of clicks and custom events and the sessions of errors (the
--   errors report's count is exact), and the first and last time. Keys only
--   ever appear as events arrive (an erasure rebuilds its hours), so a
--   generation needs no zero rows.
-- * `rollup_hour_gens.event_props`: 1 on an hour generation written with
--   those rows. An hour whose newest cover is a generation without it (one
--   written before this migration, or by an older version during a rolling
--   deploy) is read raw by these reports, and compaction writes the hour again
--   (in its bounded rounds, newest hours first); other reports keep reading
--   it from the rollups meanwhile.
-- * `rollup_event_days`: the same merged per UTC day by the day tier, so a
--   month's clicks merge 30 visitor sketches per element, not 720; and
--   `rollup_day_gens.event_props`, 1 on a day generation written with them.
--   A day written before this migration is not clean (reports read it hour
--   by hour) until the day tier writes it again, which it does once the hour
--   tier has written each of its hours with their rows.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_event_hours
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    type       LowCardinality(String) COMMENT 'click, error, or a custom event''s name',
    is_bot     UInt8,
    props      String COMMENT 'clicks and errors: their props as sent (an element; a message, source and stack); custom events: empty',
    gen        UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniqCombined(14), String) COMMENT 'clicks and custom events: their visitors, as the pages'' (empty for errors)',
    sessions   AggregateFunction(uniqExact, String) COMMENT 'errors: the sessions they hit (empty for the others)',
    first_at   DateTime64(3, 'UTC'),
    last_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, type, is_bot, props)
SETTINGS index_granularity = 1024;

ALTER TABLE ${DATABASE}.rollup_hour_gens
    ADD COLUMN IF NOT EXISTS event_props UInt8 DEFAULT 0
    COMMENT '1: the hour has its rollup_event_hours rows';

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_event_days
(
    project_id LowCardinality(String),
    day        Date,
    type       LowCardinality(String),
    is_bot     UInt8,
    props      String,
    gen        UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniqCombined(14), String),
    sessions   AggregateFunction(uniqExact, String),
    first_at   DateTime64(3, 'UTC'),
    last_at    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, type, is_bot, props)
SETTINGS index_granularity = 1024;

ALTER TABLE ${DATABASE}.rollup_day_gens
    ADD COLUMN IF NOT EXISTS event_props UInt8 DEFAULT 0
    COMMENT '1: the day has its rollup_event_days rows';
