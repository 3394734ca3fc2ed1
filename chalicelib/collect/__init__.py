"""The collect function's path: a tracker request parsed (``events``), checked, enriched and sent to Kafka (``service``)."""
