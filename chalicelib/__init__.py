"""TrackFlow's deployed logic: everything the Lambda functions import.

Layers, each importing only those below it:

- use-cases: ``collect``, ``ingest``, ``migrations``, ``runtime`` (cached wiring);
- services: ``events`` (model + validation), ``enrich``, ``producer`` (Kafka),
  ``clickhouse`` (client + writer);
- base: ``settings``, ``errors``, ``kafka_event`` (the AWS mapping payload), ``jsonutil``.
"""
