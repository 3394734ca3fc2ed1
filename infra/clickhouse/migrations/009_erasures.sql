-- Erasure of a person's data (chalicelib.ownership.people): what was erased, and which
-- ids ingest must not store again.
--
-- * `erasures`: one audit row per request: who asked, when, how many rows
--   went. The person appears only as a SHA-256 hash of the project and the id,
--   never in clear.
-- * `erased_ids`: the hash of every id erased (the user id and each anonymous
--   id linked to it). Ingest drops an event whose user id is on it, or whose
--   anonymous id is (for a browser linked to a user id: when the event has no
--   user id of another person), so a record redelivered from Kafka after the erasure (until the
--   topic's retention removes it) is not stored again.
CREATE TABLE IF NOT EXISTS ${DATABASE}.erasures
(
    receipt_id       UUID,
    erased_at        DateTime64(3, 'UTC'),
    project_id       LowCardinality(String),
    kind             LowCardinality(String) COMMENT 'user_id or anonymous_id: what the request named',
    person_hash      String COMMENT 'hex SHA-256 of project, kind and id',
    actor            String COMMENT 'who asked: the CLI user or the API admin token (its project, never the token)',
    linked_ids       UInt32 COMMENT 'ids erased: the named one and the anonymous ids linked to it',
    events           UInt64 COMMENT 'stored events deleted',
    dead_letters     UInt64,
    hours            UInt32 COMMENT 'hours whose rollups were rebuilt'
)
ENGINE = MergeTree
ORDER BY (project_id, erased_at);

CREATE TABLE IF NOT EXISTS ${DATABASE}.erased_ids
(
    project_id     LowCardinality(String),
    field          LowCardinality(String) COMMENT 'user_id or anonymous_id: the event field it is checked against',
    id_hash        String COMMENT 'hex SHA-256 of project and id (chalicelib.ownership.people.id_hash)',
    unclaimed_only UInt8 COMMENT '1: a browser linked to an erased user id: only its events without a user id',
    erased_at      DateTime64(3, 'UTC'),
    receipt_id     UUID
)
ENGINE = MergeTree
ORDER BY (project_id, field, id_hash);
