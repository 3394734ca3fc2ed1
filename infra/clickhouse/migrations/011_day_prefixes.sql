-- The overview of a day that is still going: its clean first hours summed once.
--
-- Under steady traffic the current hour is always dirty, so today is never a
-- clean day and its overview merged every session part of its clean hours one
-- by one (about 1.4 million rows for a day of 5 million events). A third
-- compaction tier, the prefix tier, sums the sessions of the clean hours
-- before the first dirty hour of each project's newest day, by the hour they
-- started in, as `rollup_session_starts` does for whole days. The overview
-- then adds the sessions that run on past the prefix one by one, less what
-- the prefix counted of them (chalicelib.stats.sql).
--
-- * `rollup_prefix_gens`: generations of the prefix tier, as
--   `rollup_day_gens`; a prefix is named by the hour it ends at (`through`,
--   exclusive, on the day it belongs to).
-- * `rollup_prefix_starts`: the figures. Every (hour, bot) of the day has a
--   row for each prefix, zeros included (no stale row survives a newer
--   generation); rows of different prefixes of a day live side by side.
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_prefix_gens
(
    project_id  LowCardinality(String),
    through     DateTime('UTC') COMMENT 'the prefix: the hours of its UTC day before this one',
    gen         UInt64,
    state       Enum8('pending' = 1, 'done' = 2),
    covered_to  DateTime64(3, 'UTC') COMMENT 'done: every change of the prefix hours marked up to this time is in it',
    lease_until DateTime64(3, 'UTC'),
    visible_at  DateTime64(3, 'UTC'),
    recorded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(through)
ORDER BY (project_id, through, gen, state);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_prefix_starts
(
    project_id              LowCardinality(String),
    through                 DateTime('UTC'),
    start_hour              DateTime('UTC'),
    is_bot                  UInt8,
    gen                     UInt64,
    sessions                UInt64 COMMENT 'sessions as the prefix hours show them (a session running on is cut at through)',
    pageviews               UInt64,
    bounces                 UInt64,
    sessions_with_pageviews UInt64,
    duration_ms             Int64,
    visitors                AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(through)
ORDER BY (project_id, through, start_hour, is_bot);
