-- A timeseries by day in a half-hour zone without raw events where its days
-- start.
--
-- A day of India starts at 18:30 UTC, inside an hour whose hourly row would
-- land whole in one day bucket, so that hour was read raw by the minute: on
-- the month bench 30 such hours, 372,514 events with FINAL, about 190 ms of a
-- 340 ms timeseries in Asia/Kolkata (100 ms in UTC).
--
-- * `rollup_traffic_halves`: page views, events and visitors of each half of
--   an hour, written by the hour tier; the timeseries reads the halves of the
--   clean hours a day bucket starts in the middle of. A quarter-hour zone
--   (Nepal) still reads them raw.
-- * `rollup_hour_gens.traffic_halves`: 1 on an hour generation written with
--   them; such an hour without it is read raw, as `event_props` (migration
--   019) has it, and compaction writes it again.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_halves
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    half       UInt8 COMMENT '0: minutes 0-29, 1: minutes 30-59',
    is_bot     UInt8,
    gen        UInt64,
    pageviews  UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, is_bot, half);

ALTER TABLE ${DATABASE}.rollup_hour_gens
    ADD COLUMN IF NOT EXISTS traffic_halves UInt8 DEFAULT 0
    COMMENT '1: the hour has its rollup_traffic_halves rows';
