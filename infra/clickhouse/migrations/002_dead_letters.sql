-- Records the ingest function could not store, with the reason. The same
-- records also go to the dead-letter topic; this table is for looking.
CREATE TABLE IF NOT EXISTS ${DATABASE}.dead_letters
(
    failed_at        DateTime64(3, 'UTC'),
    reason           String,
    source_topic     LowCardinality(String),
    source_partition UInt32,
    source_offset    UInt64,
    event_index      Int32 COMMENT '-1 when the whole record was unreadable',
    key              String,
    value            String CODEC(ZSTD(1))
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(failed_at)
ORDER BY (source_topic, source_partition, source_offset, event_index);
