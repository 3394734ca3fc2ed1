-- Rollups kept fresh by the hour, compacted in bounded, leased rounds, and
-- never cleaned up with DELETE.
--
-- Before (007): changes were tracked per UTC day, so under steady traffic
-- today was read from `events FINAL` all day; a compaction round took 31 days
-- whatever their size and wrote its rows before recording its generation;
-- superseded generations were removed with DELETE mutations.
--
-- Now:
-- * ingest marks each (project, UTC hour) it writes in `rollup_hour_changes`
--   before inserting the events and again after the insert succeeded, with
--   the number of rows (which sizes compaction rounds);
-- * compaction has two tiers. The hour tier recomputes changed hours from
--   `events FINAL` into the `*_hours` tables; the day tier merges the hours of
--   a day whose hours are all compacted into the `*_days` tables. Each round
--   first records a *pending* generation with a lease in `rollup_hour_gens` /
--   `rollup_day_gens`, then writes its rows, then records the generation
--   *done* with the newest change it covers;
-- * rollup tables are ReplacingMergeTree(gen) on their natural key and read
--   with FINAL: the newest generation of a row replaces the older ones in the
--   background, so nothing is ever deleted;
-- * an hour (a day) is clean when a done generation covers its newest change;
--   reports read clean hours and days from the rollups and the others from
--   `events FINAL`, in one statement.
DROP VIEW IF EXISTS ${DATABASE}.sessions;
DROP VIEW IF EXISTS ${DATABASE}.rollup_clean;
DROP TABLE IF EXISTS ${DATABASE}.rollup_session_days;
DROP TABLE IF EXISTS ${DATABASE}.rollup_traffic_hours;
DROP TABLE IF EXISTS ${DATABASE}.rollup_page_hours;
DROP TABLE IF EXISTS ${DATABASE}.rollup_page_days;
DROP TABLE IF EXISTS ${DATABASE}.rollup_generations;
DROP TABLE IF EXISTS ${DATABASE}.rollup_changes;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_hour_changes
(
    project_id LowCardinality(String),
    hour       DateTime('UTC') COMMENT 'UTC hour of the events written',
    changed_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')) DEFAULT now64(3)
        COMMENT 'when ingest last started or finished writing events of this hour',
    rows       SimpleAggregateFunction(sum, UInt64) DEFAULT 0
        COMMENT 'event rows written to this hour, redeliveries included: sizes compaction rounds'
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_hour_gens
(
    project_id  LowCardinality(String),
    hour        DateTime('UTC'),
    gen         UInt64 COMMENT 'compaction round that writes the rollup rows of this hour',
    state       Enum8('pending' = 1, 'done' = 2) COMMENT 'pending: recorded before its rows, with a lease',
    covered_to  DateTime64(3, 'UTC') COMMENT 'done: every change marked up to this time is in the generation',
    lease_until DateTime64(3, 'UTC') COMMENT 'pending: other rounds leave the hour alone until then',
    visible_at  DateTime64(3, 'UTC') COMMENT 'done: reports use it from then on (on a cluster, once every replica has its rows)',
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, gen, state);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_day_gens
(
    project_id  LowCardinality(String),
    day         Date,
    gen         UInt64 COMMENT 'compaction round that merges the hours of this day',
    state       Enum8('pending' = 1, 'done' = 2),
    covered_to  DateTime64(3, 'UTC') COMMENT 'done: every change of the day marked up to this time is in it',
    lease_until DateTime64(3, 'UTC'),
    visible_at  DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, gen, state);

-- A session's part within one hour; reports merge the parts of a UTC day, so
-- a session running over several hours counts once.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_hours
(
    project_id      LowCardinality(String),
    hour            DateTime('UTC'),
    session_id      String,
    gen             UInt64,
    visitor_id      String,
    is_bot          UInt8,
    started_at      DateTime64(3, 'UTC'),
    ended_at        DateTime64(3, 'UTC'),
    pageviews       UInt64,
    events          UInt64,
    entry_at        DateTime64(3, 'UTC') COMMENT 'first page view in the hour (the epoch when none)',
    entry_page      String,
    exit_at         DateTime64(3, 'UTC') COMMENT 'last page view in the hour (the epoch when none)',
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
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, session_id);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_days
(
    project_id      LowCardinality(String),
    day             Date COMMENT 'UTC day the session ran on',
    session_id      String,
    gen             UInt64,
    visitor_id      String,
    is_bot          UInt8,
    started_at      DateTime64(3, 'UTC'),
    ended_at        DateTime64(3, 'UTC'),
    pageviews       UInt64,
    events          UInt64,
    entry_page      String,
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
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, session_id);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_hours
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    is_bot     UInt8,
    gen        UInt64,
    pageviews  UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, is_bot);

-- Visitors per page are HyperLogLog estimates (uniqCombined(14): exact up to
-- a few thousand, within about 1% beyond).
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_page_hours
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    is_bot     UInt8,
    url_path   String,
    gen        UInt64,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, is_bot, url_path);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_page_days
(
    project_id LowCardinality(String),
    day        Date,
    is_bot     UInt8,
    url_path   String,
    gen        UInt64,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, is_bot, url_path);

-- Overview figures of a day's sessions by the hour they started in (and bot or
-- not): a month of overview merges about 1,500 rows instead of reading every
-- session. Every (hour, bot) of a compacted day has a row, zeros included, so a
-- session whose start moved to another hour (a late event) leaves no stale row.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_starts
(
    project_id              LowCardinality(String),
    day                     Date,
    start_hour              DateTime('UTC'),
    is_bot                  UInt8,
    gen                     UInt64,
    sessions                UInt64,
    pageviews               UInt64,
    bounces                 UInt64 COMMENT 'sessions with exactly one page view',
    sessions_with_pageviews UInt64,
    duration_ms             Int64 COMMENT 'sum of first-to-last-event times',
    visitors                AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, start_hour, is_bot);

-- Sessions for people browsing with DBeaver, computed from `events FINAL`:
-- exact at any moment; filter by project and day, it reads every event.
CREATE OR REPLACE VIEW ${DATABASE}.sessions
(
    project_id      String COMMENT 'project the session belongs to',
    day             Date COMMENT 'UTC day; a session running past midnight UTC has a row per day',
    session_id      String COMMENT 'tracker session id (the visitor id when none was sent)',
    visitor_id      String COMMENT 'anonymous visitor id',
    started_at      DateTime64(3, 'UTC') COMMENT 'first event of the session',
    ended_at        DateTime64(3, 'UTC') COMMENT 'last event of the session',
    duration_s      Int64 COMMENT 'seconds from first to last event',
    pageviews       UInt64 COMMENT 'page views in the session',
    events          UInt64 COMMENT 'events of any type in the session',
    entry_page      String COMMENT 'path of the first page view',
    exit_page       String COMMENT 'path of the last page view',
    referrer_domain String COMMENT 'where the session came from',
    utm_source      String COMMENT 'utm_source of the session',
    utm_medium      String COMMENT 'utm_medium of the session',
    utm_campaign    String COMMENT 'utm_campaign of the session',
    browser         String COMMENT 'browser family',
    os              String COMMENT 'operating system family',
    device_type     String COMMENT 'desktop, mobile, tablet or other',
    country         String COMMENT 'ISO country code, empty when unknown',
    is_bot          UInt8 COMMENT '1 when the user agent is a known crawler'
) AS
SELECT project_id, toDate(timestamp) AS day, session_key AS session_id, any(visitor_id) AS visitor_id,
       min(timestamp) AS started_at, max(timestamp) AS ended_at,
       dateDiff('second', min(timestamp), max(timestamp)) AS duration_s,
       countIf(type = 'pageView') AS pageviews, count() AS events,
       argMinIf(url_path, timestamp, type = 'pageView') AS entry_page,
       argMaxIf(url_path, timestamp, type = 'pageView') AS exit_page,
       max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
       max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
       any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country,
       max(is_bot) AS is_bot
FROM ${DATABASE}.events FINAL
GROUP BY project_id, day, session_id;

-- Every hour that has events is marked changed: compaction rebuilds them in
-- rounds sized by rows, newest first (the dashboard's default period first).
INSERT INTO ${DATABASE}.rollup_hour_changes (project_id, hour, rows)
SELECT project_id, toStartOfHour(timestamp), count() FROM ${DATABASE}.events GROUP BY project_id, toStartOfHour(timestamp);
