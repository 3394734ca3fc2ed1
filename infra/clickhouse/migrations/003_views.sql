-- Plain-named views for people browsing with DBeaver; FINAL so a redelivered
-- event is counted once.
CREATE VIEW IF NOT EXISTS ${DATABASE}.pageviews AS
SELECT project_id, timestamp, event_id, anonymous_id, session_id, url, url_host, url_path,
       title, referrer, referrer_domain, utm_source, utm_medium, utm_campaign, environment
FROM ${DATABASE}.events FINAL
WHERE type = 'pageView';

CREATE VIEW IF NOT EXISTS ${DATABASE}.clicks AS
SELECT project_id, timestamp, event_id, anonymous_id, session_id, url_path,
       JSONExtractString(props, 'tag') AS tag, JSONExtractString(props, 'id') AS element_id,
       JSONExtractString(props, 'text') AS text, JSONExtractString(props, 'href') AS href
FROM ${DATABASE}.events FINAL
WHERE type = 'click';

CREATE VIEW IF NOT EXISTS ${DATABASE}.errors AS
SELECT project_id, timestamp, event_id, anonymous_id, session_id, url_path,
       JSONExtractString(props, 'message') AS message, JSONExtractString(props, 'source') AS source,
       JSONExtractInt(props, 'line') AS line, JSONExtractInt(props, 'col') AS col,
       JSONExtractString(props, 'stack') AS stack
FROM ${DATABASE}.events FINAL
WHERE type = 'error';
