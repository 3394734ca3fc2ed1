-- Rollups for the stats API, filled by materialized views as events are
-- inserted, so dashboard reads don't scan raw events.
--
-- A session is one session_id on one UTC day (a session that runs past
-- midnight UTC counts on both days, as in Google Analytics). Events sent
-- without ids fall back: the visitor to the daily-salted IP hash, the session
-- to the visitor.
--
-- Redelivery: ingest inserts with a deduplication token and
-- deduplicate_blocks_in_dependent_materialized_views, so a re-inserted batch
-- is dropped by every rollup table too (each keeps a deduplication window).
-- Ingest also drops repeated event ids within a batch.
--
-- Each view is followed by a backfill of the events stored before it existed
-- (inserted before the view's creation time), so upgrading keeps history.
ALTER TABLE ${DATABASE}.events
    ADD COLUMN IF NOT EXISTS visitor_id String ALIAS if(anonymous_id != '', anonymous_id, toString(visitor_hash))
        COMMENT 'the tracker''s anonymous id, or the daily IP hash when none was sent',
    ADD COLUMN IF NOT EXISTS session_key String ALIAS if(session_id != '', session_id, visitor_id)
        COMMENT 'the session id, or the visitor when none was sent';

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_sessions
(
    project_id      LowCardinality(String),
    day             Date COMMENT 'UTC day the session ran on',
    session_id      String,
    visitor_id      SimpleAggregateFunction(any, String),
    is_bot          SimpleAggregateFunction(max, UInt8),
    started_at      SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ended_at        SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    pageviews       SimpleAggregateFunction(sum, UInt64),
    events          SimpleAggregateFunction(sum, UInt64),
    entry_page      AggregateFunction(argMinIf, String, DateTime64(3, 'UTC'), UInt8),
    exit_page       AggregateFunction(argMaxIf, String, DateTime64(3, 'UTC'), UInt8),
    referrer_domain SimpleAggregateFunction(max, LowCardinality(String)),
    utm_source      SimpleAggregateFunction(max, LowCardinality(String)),
    utm_medium      SimpleAggregateFunction(max, LowCardinality(String)),
    utm_campaign    SimpleAggregateFunction(max, String),
    browser         SimpleAggregateFunction(any, LowCardinality(String)),
    os              SimpleAggregateFunction(any, LowCardinality(String)),
    device_type     SimpleAggregateFunction(any, LowCardinality(String)),
    country         SimpleAggregateFunction(any, LowCardinality(String))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, session_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DATABASE}.rollup_sessions_mv TO ${DATABASE}.rollup_sessions AS
SELECT project_id, toDate(timestamp) AS day, session_key AS session_id,
       any(visitor_id) AS visitor_id, max(is_bot) AS is_bot,
       min(timestamp) AS started_at, max(timestamp) AS ended_at,
       countIf(type = 'pageView') AS pageviews, count() AS events,
       argMinIfState(url_path, timestamp, type = 'pageView') AS entry_page,
       argMaxIfState(url_path, timestamp, type = 'pageView') AS exit_page,
       max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
       max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
       any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country
FROM ${DATABASE}.events
GROUP BY project_id, day, session_id;

INSERT INTO ${DATABASE}.rollup_sessions
SELECT project_id, toDate(timestamp) AS day, session_key AS session_id,
       any(visitor_id) AS visitor_id, max(is_bot) AS is_bot,
       min(timestamp) AS started_at, max(timestamp) AS ended_at,
       countIf(type = 'pageView') AS pageviews, count() AS events,
       argMinIfState(url_path, timestamp, type = 'pageView') AS entry_page,
       argMaxIfState(url_path, timestamp, type = 'pageView') AS exit_page,
       max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
       max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
       any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country
FROM ${DATABASE}.events FINAL
WHERE inserted_at < (SELECT metadata_modification_time FROM system.tables WHERE database = '${DATABASE}' AND name = 'rollup_sessions_mv')
GROUP BY project_id, day, session_id;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_hourly
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    is_bot     UInt8,
    pageviews  SimpleAggregateFunction(sum, UInt64),
    events     SimpleAggregateFunction(sum, UInt64),
    visitors   AggregateFunction(uniq, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, is_bot)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DATABASE}.rollup_hourly_mv TO ${DATABASE}.rollup_hourly AS
SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot,
       countIf(type = 'pageView') AS pageviews, count() AS events, uniqState(visitor_id) AS visitors
FROM ${DATABASE}.events
GROUP BY project_id, hour, is_bot;

INSERT INTO ${DATABASE}.rollup_hourly
SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot,
       countIf(type = 'pageView') AS pageviews, count() AS events, uniqState(visitor_id) AS visitors
FROM ${DATABASE}.events FINAL
WHERE inserted_at < (SELECT metadata_modification_time FROM system.tables WHERE database = '${DATABASE}' AND name = 'rollup_hourly_mv')
GROUP BY project_id, hour, is_bot;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_pages_hourly
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    is_bot     UInt8,
    url_path   String,
    pageviews  SimpleAggregateFunction(sum, UInt64),
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, is_bot, url_path)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DATABASE}.rollup_pages_hourly_mv TO ${DATABASE}.rollup_pages_hourly AS
SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot, url_path,
       count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors
FROM ${DATABASE}.events
WHERE type = 'pageView'
GROUP BY project_id, hour, is_bot, url_path;

INSERT INTO ${DATABASE}.rollup_pages_hourly
SELECT project_id, toStartOfHour(timestamp) AS hour, is_bot, url_path,
       count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors
FROM ${DATABASE}.events FINAL
WHERE type = 'pageView' AND inserted_at < (SELECT metadata_modification_time FROM system.tables WHERE database = '${DATABASE}' AND name = 'rollup_pages_hourly_mv')
GROUP BY project_id, hour, is_bot, url_path;

-- Top pages over whole days read this instead of 24 hourly rows per page.
-- Visitors per page are HyperLogLog estimates (uniqCombined(14): exact up to a
-- few thousand, within about 1% beyond): exact states of popular pages are
-- large, and merging them made a month's top pages ten times slower.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_pages_daily
(
    project_id LowCardinality(String),
    day        Date,
    is_bot     UInt8,
    url_path   String,
    pageviews  SimpleAggregateFunction(sum, UInt64),
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, is_bot, url_path)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS ${DATABASE}.rollup_pages_daily_mv TO ${DATABASE}.rollup_pages_daily AS
SELECT project_id, toDate(timestamp) AS day, is_bot, url_path,
       count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors
FROM ${DATABASE}.events
WHERE type = 'pageView'
GROUP BY project_id, day, is_bot, url_path;

INSERT INTO ${DATABASE}.rollup_pages_daily
SELECT project_id, toDate(timestamp) AS day, is_bot, url_path,
       count() AS pageviews, uniqCombinedState(14)(visitor_id) AS visitors
FROM ${DATABASE}.events FINAL
WHERE type = 'pageView' AND inserted_at < (SELECT metadata_modification_time FROM system.tables WHERE database = '${DATABASE}' AND name = 'rollup_pages_daily_mv')
GROUP BY project_id, day, is_bot, url_path;
