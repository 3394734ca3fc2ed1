-- A timeseries by day in a zone whose days are not UTC days, from a few
-- visitor states per day instead of one per hour, and no raw events where
-- its days start on a half hour.
--
-- A day bucket that is a whole UTC day reads the day's one row
-- (`rollup_traffic_days`, migration 012). In a zone at another offset (India's
-- +5:30, New York's -5:00) every local day is two pieces of UTC days, so a
-- 30-day timeseries merged 720 hourly visitor states of up to 65,536 hashes
-- each: about 240 ms of a 340 ms call in Asia/Kolkata on the month bench,
-- against 100 ms in UTC.
--
-- * `rollup_traffic_blocks`: the visitors of aligned blocks of 2, 4, 8 and 16
--   hours of each UTC day (00-02, 02-04, ..., 00-16), merged by the day tier
--   from the hourly rows. Any run of whole hours of a day is at most a few
--   blocks and hours (chalicelib.stats.sql): a day of India is 19-24 of one UTC
--   day (a block of 4 and an hour) and 00-18 of the next (blocks of 16 and 2),
--   and its two half hours raw.
-- * `rollup_day_gens.traffic_blocks`: 1 on a day generation written with those
--   rows. A day written before this migration is not clean (reports read it
--   hour by hour) until the day tier writes it again.
-- * `rollup_traffic_halves`: page views, events and visitors of each half of
--   an hour, written by the hour tier, for the hours a day of a half-hour zone
--   starts inside of (18:00 UTC for India), which were read raw by the minute:
--   30 such hours took about 190 ms of the same call. A quarter-hour zone
--   (Nepal) still reads them raw.
-- * `rollup_hour_gens.traffic_halves`: 1 on an hour generation written with
--   them; such an hour without it is read raw, as `event_props` (migration
--   019) has it.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_blocks
(
    project_id LowCardinality(String),
    day        Date,
    start_hour UInt8 COMMENT 'the block''s first hour of the UTC day',
    hours      UInt8 COMMENT 'its length: 2, 4, 8 or 16, starting at a multiple of it',
    is_bot     UInt8,
    gen        UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, is_bot, start_hour, hours);

ALTER TABLE ${DATABASE}.rollup_day_gens
    ADD COLUMN IF NOT EXISTS traffic_blocks UInt8 DEFAULT 0
    COMMENT '1: the day has its rollup_traffic_blocks rows';

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
