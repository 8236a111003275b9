"""The RabbitMQ adapter: ``amqp://`` and ``amqps://`` URLs, on aio-pika.

    amqp://user:pass@host:5672/vhost?exchange=bus&prefetch=50&queue_type=quorum

Options (config.py): ``exchange`` (default ``bus``), ``prefetch`` (overrides the
subscription's concurrency), ``queue_type=classic|quorum``, ``confirm`` (default true),
``max_length`` (refuse publishes beyond N ready messages), ``heartbeat`` and aio-pika's
own (``timeout``, ``name``, TLS files).

On the broker (topology.py): a durable topic exchange, a durable queue ``X:group:topic``
per group bound by topic, its dead-letter queue ``X:group:topic:dlq``, and retry delay
queues that expire messages back to the group's queue. Replies use direct reply-to.
Files: config (URL), convert (Message <-> AMQP), native (header tables written back as
read), topology, link (connection and channels that come back), publish (confirmed,
retried over reconnects), copies (retries, dead letters and returns of delivered
messages), consumer, inbox, browse (dead letters and replay), errors (driver -> bus
errors), transport (the whole).
"""

from adapters.rabbitmq.transport import RabbitTransport

__all__ = ["RabbitTransport"]
