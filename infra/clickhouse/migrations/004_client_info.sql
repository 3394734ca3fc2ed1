-- What collect derives from the request: parsed user agent, bot flag, CDN
-- country, and a daily-salted visitor hash (never the IP address itself).
ALTER TABLE ${DATABASE}.events
    ADD COLUMN IF NOT EXISTS browser         LowCardinality(String) AFTER user_agent,
    ADD COLUMN IF NOT EXISTS browser_version LowCardinality(String) AFTER browser,
    ADD COLUMN IF NOT EXISTS os              LowCardinality(String) AFTER browser_version,
    ADD COLUMN IF NOT EXISTS os_version      LowCardinality(String) AFTER os,
    ADD COLUMN IF NOT EXISTS device_type     LowCardinality(String) AFTER os_version,
    ADD COLUMN IF NOT EXISTS is_bot          UInt8 AFTER device_type,
    ADD COLUMN IF NOT EXISTS country         LowCardinality(String) AFTER is_bot,
    ADD COLUMN IF NOT EXISTS visitor_hash    UInt64 COMMENT 'daily-salted hash of project, IP and user agent' AFTER country;
