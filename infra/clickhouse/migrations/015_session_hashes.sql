-- A 64-bit hash of the session id beside each hourly session part.
--
-- The overview of a day still going (the prefix of chalicelib.stats.sql)
-- looks up the earlier parts of the sessions that run on past the prefix:
-- under traffic, the 24,000 sessions of the current hour among the 1.4
-- million parts of the day's other hours, on the busy bench day. That read
-- was most of the report: `session_id` is a 36-character string, 108 MB
-- of it for those parts, and `FINAL` must read it whole to merge. The
-- lookup now reads this column instead (12 MB) without `FINAL`, and merges
-- the few parts it keeps itself (newest generation).
--
-- Parts written before this migration compute it from `session_id` when
-- read, until a merge or a newer generation writes it; nothing needs it
-- stored to stay exact.
ALTER TABLE ${DATABASE}.rollup_session_hours
    ADD COLUMN IF NOT EXISTS session_hash UInt64 MATERIALIZED sipHash64(session_id)
    COMMENT 'sipHash64(session_id): the overview looks sessions up by it';
