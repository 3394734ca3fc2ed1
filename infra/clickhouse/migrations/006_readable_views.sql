-- The plain-named views again, now with a comment on every column so a
-- database browser such as DBeaver explains them, and a sessions view over
-- the session rollup. Every view reads deduplicated data (FINAL).
CREATE OR REPLACE VIEW ${DATABASE}.pageviews
(
    project_id      String COMMENT 'project the event belongs to',
    timestamp       DateTime64(3, 'UTC') COMMENT 'when it happened (client clock corrected by the server)',
    event_id        UUID COMMENT 'id the tracker gave the event; unique per project',
    visitor_id      String COMMENT 'anonymous visitor id (or daily IP hash when the client sent none)',
    session_id      String COMMENT 'tracker session id',
    url             String COMMENT 'full page URL',
    url_host        String COMMENT 'host part of the URL',
    url_path        String COMMENT 'path part of the URL',
    title           String COMMENT 'document title',
    referrer        String COMMENT 'external referrer of the session',
    referrer_domain String COMMENT 'host of the referrer',
    utm_source      String COMMENT 'utm_source the session arrived with',
    utm_medium      String COMMENT 'utm_medium the session arrived with',
    utm_campaign    String COMMENT 'utm_campaign the session arrived with',
    browser         String COMMENT 'browser family from the user agent',
    os              String COMMENT 'operating system family',
    device_type     String COMMENT 'desktop, mobile, tablet or other',
    country         String COMMENT 'ISO country code from CDN headers, empty when unknown',
    is_bot          UInt8 COMMENT '1 when the user agent is a known crawler',
    environment     String COMMENT 'environment the tracker reported'
) AS
SELECT project_id, timestamp, event_id, visitor_id, session_id, url, url_host, url_path, title,
       referrer, referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type,
       country, is_bot, environment
FROM ${DATABASE}.events FINAL
WHERE type = 'pageView';

CREATE OR REPLACE VIEW ${DATABASE}.clicks
(
    project_id String COMMENT 'project the event belongs to',
    timestamp  DateTime64(3, 'UTC') COMMENT 'when it happened',
    event_id   UUID COMMENT 'id the tracker gave the event',
    visitor_id String COMMENT 'anonymous visitor id',
    session_id String COMMENT 'tracker session id',
    url_path   String COMMENT 'page the click happened on',
    tag        String COMMENT 'tag name of the clicked element (A, BUTTON, ...)',
    element_id String COMMENT 'id attribute of the clicked element',
    text       String COMMENT 'visible text of the clicked element',
    href       String COMMENT 'link target, for links'
) AS
SELECT project_id, timestamp, event_id, visitor_id, session_id, url_path,
       JSONExtractString(props, 'tag') AS tag, JSONExtractString(props, 'id') AS element_id,
       JSONExtractString(props, 'text') AS text, JSONExtractString(props, 'href') AS href
FROM ${DATABASE}.events FINAL
WHERE type = 'click';

CREATE OR REPLACE VIEW ${DATABASE}.errors
(
    project_id String COMMENT 'project the event belongs to',
    timestamp  DateTime64(3, 'UTC') COMMENT 'when it happened',
    event_id   UUID COMMENT 'id the tracker gave the event',
    visitor_id String COMMENT 'anonymous visitor id',
    session_id String COMMENT 'tracker session id',
    url_path   String COMMENT 'page the error happened on',
    message    String COMMENT 'error message',
    source     String COMMENT 'script URL the error came from',
    line       Int64 COMMENT 'line number in the source',
    col        Int64 COMMENT 'column number in the source',
    stack      String COMMENT 'stack trace, when the browser gave one'
) AS
SELECT project_id, timestamp, event_id, visitor_id, session_id, url_path,
       JSONExtractString(props, 'message') AS message, JSONExtractString(props, 'source') AS source,
       JSONExtractInt(props, 'line') AS line, JSONExtractInt(props, 'col') AS col,
       JSONExtractString(props, 'stack') AS stack
FROM ${DATABASE}.events FINAL
WHERE type = 'error';

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
       dateDiff('second', started_at, ended_at) AS duration_s, pageviews, events,
       finalizeAggregation(entry_page) AS entry_page, finalizeAggregation(exit_page) AS exit_page,
       referrer_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, country, is_bot
FROM ${DATABASE}.rollup_sessions FINAL;
