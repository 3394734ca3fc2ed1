-- The current hour compacted up to a cut, so that under steady traffic a
-- report reads minutes of raw events, not the whole hour.
--
-- Under traffic the current hour is marked every few seconds, so it never
-- settles and the hour tier never takes it: every report read all of its
-- events from `events FINAL` (on a 10 M-event day, 100,000 events, three
-- times per dashboard refresh). A fourth tier, the cut tier, writes the
-- hour's rows for the events before a cut (`through`), and reports read those
-- rows and only the events from the cut on raw.
--
-- Why a cut stays exact while the hour keeps changing: a round covers the
-- marks that are settled (older than the settle time: their inserts are
-- done) and cuts well before them. An insert marked after that brings events
-- of the last minutes, after the cut. An insert that brings older events (a
-- redelivery, a client that was offline) is *late*, and a late mark after a
-- cut's cover makes the cut unusable until the next round covers it:
--
-- * `rollup_hour_changes.earliest`: the earliest event of the insert in that
--   hour, passed by ingest. Marks without one (other writers, migrations)
--   take the hour's start, so they count as late;
-- * `rollup_hour_changes.late_change`: the mark's time when its earliest
--   event is more than two minutes older than it (LATE_MARK in
--   chalicelib.rollups.sql), the epoch otherwise; the newest survives merges;
-- * `rollup_cut_gens`: generations of the cut tier, as `rollup_hour_gens`,
--   with the cut (`through`, exclusive);
-- * `rollup_session_cuts`, `rollup_traffic_cuts`, `rollup_page_cuts`: the
--   rows of each cut generation side by side (a report reads the rows of the
--   one generation its split names, so a round writing the next cut never
--   changes what a report reads). They expire a day after they were written;
--   reports use cuts written in the last 12 hours (CUT_FRESH).
ALTER TABLE ${DATABASE}.rollup_hour_changes
    ADD COLUMN IF NOT EXISTS earliest DateTime64(3, 'UTC') DEFAULT toDateTime64(hour, 3, 'UTC')
    COMMENT 'the earliest event of the insert in this hour (only to derive late_change: merges keep any value)';

ALTER TABLE ${DATABASE}.rollup_hour_changes
    ADD COLUMN IF NOT EXISTS late_change SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
    DEFAULT if(earliest < changed_at - toIntervalMinute(2), changed_at, toDateTime64(0, 3, 'UTC'))
    COMMENT 'the newest change that brought events more than two minutes older than itself';

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_cut_gens
(
    project_id  LowCardinality(String),
    hour        DateTime('UTC'),
    gen         UInt64,
    state       Enum8('pending' = 1, 'done' = 2),
    covered_to  DateTime64(3, 'UTC') COMMENT 'done: every change marked up to this time is in it',
    through     DateTime64(3, 'UTC') COMMENT 'done: its rows hold the events of the hour before this time',
    lease_until DateTime64(3, 'UTC'),
    visible_at  DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, gen, state)
TTL toDateTime(recorded_at) + INTERVAL 7 DAY;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_cuts
(
    project_id      LowCardinality(String),
    hour            DateTime('UTC'),
    gen             UInt64,
    written_at      DateTime('UTC') DEFAULT now(),
    session_id      String,
    visitor_id      String,
    is_bot          UInt8,
    started_at      DateTime64(3, 'UTC'),
    ended_at        DateTime64(3, 'UTC'),
    pageviews       UInt64,
    events          UInt64,
    entry_at        DateTime64(3, 'UTC'),
    entry_page      String,
    exit_at         DateTime64(3, 'UTC'),
    exit_page       String,
    referrer_domain LowCardinality(String),
    utm_source      LowCardinality(String),
    utm_medium      LowCardinality(String),
    utm_campaign    String,
    browser         LowCardinality(String),
    os              LowCardinality(String),
    device_type     LowCardinality(String),
    country         LowCardinality(String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(written_at)
ORDER BY (project_id, hour, gen, session_id)
TTL written_at + INTERVAL 1 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_cuts
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    gen        UInt64,
    written_at DateTime('UTC') DEFAULT now(),
    is_bot     UInt8,
    pageviews  UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(written_at)
ORDER BY (project_id, hour, gen, is_bot)
TTL written_at + INTERVAL 1 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_page_cuts
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    gen        UInt64,
    written_at DateTime('UTC') DEFAULT now(),
    is_bot     UInt8,
    url_path   String,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(written_at)
ORDER BY (project_id, hour, gen, is_bot, url_path)
TTL written_at + INTERVAL 1 DAY
SETTINGS ttl_only_drop_parts = 1;
