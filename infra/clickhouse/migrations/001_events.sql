-- Raw events, one row per event. Redelivery is harmless twice over:
-- the same batch again is dropped at insert by its deduplication token
-- (non_replicated_deduplication_window), and the same event_id in another
-- batch collapses in ReplacingMergeTree; queries read it with FINAL.
CREATE TABLE IF NOT EXISTS ${DATABASE}.events
(
    project_id      LowCardinality(String),
    timestamp       DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    type            LowCardinality(String),
    event_id        UUID,
    anonymous_id    String,
    session_id      String,
    user_id         String,
    client_ts       DateTime64(3, 'UTC'),
    received_at     DateTime64(3, 'UTC'),
    url             String CODEC(ZSTD(1)),
    url_host        LowCardinality(String),
    url_path        String,
    url_query       String CODEC(ZSTD(1)),
    referrer        String CODEC(ZSTD(1)),
    referrer_domain LowCardinality(String),
    title           String CODEC(ZSTD(1)),
    screen          LowCardinality(String),
    language        LowCardinality(String),
    timezone        LowCardinality(String),
    environment     LowCardinality(String),
    sdk_version     LowCardinality(String),
    user_agent      String CODEC(ZSTD(1)),
    utm_source      LowCardinality(String),
    utm_medium      LowCardinality(String),
    utm_campaign    String,
    utm_term        String,
    utm_content     String,
    props           String CODEC(ZSTD(1)) COMMENT 'event properties as JSON text; read with JSONExtract*',
    _topic          LowCardinality(String),
    _partition      UInt32,
    _offset         UInt64,
    inserted_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, toDate(timestamp), type, event_id)
SETTINGS non_replicated_deduplication_window = 1000;
