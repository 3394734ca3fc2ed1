-- Whole days in one row where the hourly rows made every report merge 24
-- visitor states a day (a state holds up to 65,536 hashes: a month of
-- overview merged 720 of them). Written by the day tier, both bot slots
-- always, so no stale row survives a newer generation:
-- * `rollup_session_day_visitors`: the visitors of the day's sessions, for
--   the overview of days a period holds whole;
-- * `rollup_traffic_days`: page views, events and visitors of the day, for
--   timeseries day buckets a UTC day lies wholly inside (UTC, and zones with
--   no offset on that day).
CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_session_day_visitors
(
    project_id LowCardinality(String),
    day        Date,
    is_bot     UInt8,
    gen        UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, is_bot);

CREATE TABLE IF NOT EXISTS ${DATABASE}.rollup_traffic_days
(
    project_id LowCardinality(String),
    day        Date,
    is_bot     UInt8,
    gen        UInt64,
    pageviews  UInt64,
    events     UInt64,
    visitors   AggregateFunction(uniq, String)
)
ENGINE = ReplacingMergeTree(gen)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, is_bot);

-- Days compacted before this migration have no such rows yet: one hour of
-- every day is marked changed, so the day is read from its hours (and that
-- hour raw) until compaction has redone the hour and then the day.
INSERT INTO ${DATABASE}.rollup_hour_changes (project_id, hour, rows)
SELECT project_id, min(hour), 0 FROM ${DATABASE}.rollup_hour_changes GROUP BY project_id, toDate(hour);
