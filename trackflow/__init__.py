"""TrackFlow's local tooling (never deployed): the ``trackflow`` CLI, the dev
orchestrator, the Kafka trigger runner and the embedded broker launcher."""
