"""ClickHouse: the client and the events writer (``clickhouse``), migrations, and retention."""
