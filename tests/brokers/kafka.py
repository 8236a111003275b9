"""A Kafka-protocol broker for tests: filled in by the Kafka adapter work."""
