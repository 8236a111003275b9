"""The Kafka adapter: ``kafka://`` and ``kafka+ssl://`` URLs, on aiokafka."""

from adapters.kafka.transport import KafkaTransport

__all__ = ["KafkaTransport"]
