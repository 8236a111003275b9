"""RabbitMQ for tests: filled in by the RabbitMQ adapter work."""
