"""The RabbitMQ adapter: ``amqp://`` and ``amqps://`` URLs, on aio-pika."""

from adapters.rabbitmq.transport import RabbitTransport

__all__ = ["RabbitTransport"]
