"""TrackFlow's deployed logic: everything the Lambda functions import.

Packages by concern, each module with a docstring of its own:

- ``collect``: the collect function's path, request to Kafka;
- ``kafka``: the mapping payload, the producer, security and diagnosis;
- ``storage``: the ClickHouse client and writer, migrations, retention;
- ``rollups``: compaction and the split each report reads;
- ``stats``: the stats API, its reports and their SQL;
- ``ownership``: a person's data, erasure and export.

At the top: the use-cases wired by ``app.py`` (``ingest``, ``config_api``,
``health``, ``runtime``: lazily built, cached clients) and what every package
uses (``settings``, ``secrets``, ``errors``, ``responses``, ``metrics``,
``emf``, ``projects``, ``goals``, ``cluster_ddl``, ``function_url``).
"""
