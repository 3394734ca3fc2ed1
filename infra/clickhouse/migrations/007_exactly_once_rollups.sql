-- Rollups built only from deduplicated events, so every report counts an
-- event once whatever the redelivery.
--
-- Before: materialized views aggregated every inserted block. A redelivery in
-- batches with other boundaries than the first delivery (what the AWS mapping
-- does after a timeout, and BisectBatchOnFunctionError by design) was counted
-- again by every rollup, although `events FINAL` held it once.
--
-- Now:
-- * ingest marks each (project, day) it writes in `rollup_changes` *before*
--   inserting the events;
-- * a compaction step (`trackflow rollups compact`, the dev server's thread,
--   the scheduled `compact` Lambda) recomputes changed days from `events FINAL`
--   into a new *generation* of rows and records it in `rollup_generations`
--   with the time of the newest change it covers;
-- * `rollup_clean` lists the days whose newest generation covers every change;
--   reports read those days from the rollups and every other day from
--   `events FINAL`. Old generations are never read and are deleted later.
-- Nothing here depends on an insert being atomic across tables.
DROP VIEW IF EXISTS ${DATABASE}.rollup_sessions_mv;
DROP VIEW IF EXISTS ${DATABASE}.rollup_hourly_mv;
DROP VIEW IF EXISTS ${DATABASE}.rollup_pages_hourly_mv;
DROP VIEW IF EXISTS ${DATABASE}.rollup_pages_daily_mv;

-- Duplicates collapse in ReplacingMergeTree (read with FINAL); hashing every
-- block to drop identical ones only cost insert time, and made the number of
-- rows an insert kept unknowable to the writer.
ALTER TABLE ${DATABASE}.events MODIFY SETTING non_replicated_deduplication_window = 0;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_changes
(
    project_id LowCardinality(String),
    day        Date COMMENT 'UTC day of the events written',
    changed_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')) DEFAULT now64(3)
        COMMENT 'when ingest last started writing events of this day'
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, day);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_generations
(
    project_id  LowCardinality(String),
    day         Date,
    gen         UInt64 COMMENT 'compaction that wrote the rollup rows of this day',
    covered_to  DateTime64(3, 'UTC') COMMENT 'every change marked up to this time is in the generation',
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (project_id, day, gen);

CREATE OR REPLACE VIEW ${DATABASE}.rollup_clean
(
    project_id String COMMENT 'project',
    day        Date COMMENT 'UTC day whose rollup rows are complete',
    gen        UInt64 COMMENT 'the generation of rollup rows to read for it'
) AS
SELECT g.project_id AS project_id, g.day AS day, g.newest_gen AS gen
FROM
(
    SELECT project_id, day, max(gen) AS newest_gen, argMax(covered_to, gen) AS newest_covered_to
    FROM ${DATABASE}.rollup_generations
    GROUP BY project_id, day
) AS g
LEFT JOIN
(
    SELECT project_id, day, max(changed_at) AS last_change
    FROM ${DATABASE}.rollup_changes
    GROUP BY project_id, day
) AS c ON g.project_id = c.project_id AND g.day = c.day
WHERE g.newest_covered_to >= c.last_change;

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_days
(
    project_id      LowCardinality(String),
    day             Date COMMENT 'UTC day the session ran on',
    gen             UInt64,
    session_id      String,
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
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, gen, session_id);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_hours
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    gen        UInt64,
    is_bot     UInt8,
    pageviews  UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, gen, is_bot);

-- Visitors per page are HyperLogLog estimates (uniqCombined(14): exact up to
-- a few thousand, within about 1% beyond): exact states of popular pages are
-- large, and merging them made a month's top pages ten times slower.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_page_hours
(
    project_id LowCardinality(String),
    hour       DateTime('UTC'),
    gen        UInt64,
    is_bot     UInt8,
    url_path   String,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (project_id, hour, gen, is_bot, url_path);

-- Top pages over whole days read this instead of 24 hourly rows per page.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_page_days
(
    project_id LowCardinality(String),
    day        Date,
    gen        UInt64,
    is_bot     UInt8,
    url_path   String,
    pageviews  UInt64,
    visitors   AggregateFunction(uniqCombined(14), String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, gen, is_bot, url_path);

-- Sessions for people browsing with DBeaver: compacted days from the rollup,
-- the rest computed from `events FINAL`, so it is exact at any moment.
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
SELECT project_id, day, session_id, visitor_id, started_at, ended_at,
       dateDiff('second', started_at, ended_at) AS duration_s, pageviews, events, entry_page, exit_page,
       referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, country, is_bot
FROM
(
    SELECT project_id, day, session_id, visitor_id, started_at, ended_at, pageviews, events, entry_page,
           exit_page, referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type,
           country, is_bot
    FROM ${DATABASE}.rollup_session_days
    WHERE (project_id, day, gen) IN (SELECT project_id, day, gen FROM ${DATABASE}.rollup_clean)
    UNION ALL
    SELECT project_id, toDate(timestamp) AS day, session_key AS session_id, any(visitor_id) AS visitor_id,
           min(timestamp) AS started_at, max(timestamp) AS ended_at,
           countIf(type = 'pageView') AS pageviews, count() AS events,
           argMinIf(url_path, timestamp, type = 'pageView') AS entry_page,
           argMaxIf(url_path, timestamp, type = 'pageView') AS exit_page,
           max(referrer_domain) AS referrer_domain, max(utm_source) AS utm_source,
           max(utm_medium) AS utm_medium, max(utm_campaign) AS utm_campaign,
           any(browser) AS browser, any(os) AS os, any(device_type) AS device_type, any(country) AS country,
           max(is_bot) AS is_bot
    FROM ${DATABASE}.events FINAL
    WHERE (project_id, toDate(timestamp)) NOT IN (SELECT project_id, day FROM ${DATABASE}.rollup_clean)
    GROUP BY project_id, day, session_id
);

-- The old rollups were filled by the views dropped above; compaction rebuilds
-- every day that has events from `events FINAL`.
DROP TABLE IF EXISTS ${DATABASE}.rollup_sessions;
DROP TABLE IF EXISTS ${DATABASE}.rollup_hourly;
DROP TABLE IF EXISTS ${DATABASE}.rollup_pages_hourly;
DROP TABLE IF EXISTS ${DATABASE}.rollup_pages_daily;

INSERT INTO ${DATABASE}.rollup_changes (project_id, day)
SELECT DISTINCT project_id, toDate(timestamp) FROM ${DATABASE}.events;
