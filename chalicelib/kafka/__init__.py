"""Kafka: the Lambda mapping's payload (``records``), the producer, the client's security settings and its errors explained."""
