"""The one producer of a transport: acks=all, idempotent where the broker allows it.

Every send is awaited until the broker holds the record; failures become PublishError.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import Headers
from bus.errors import ConnectionLost, PublishError

log = logging.getLogger("bus.kafka")

MAX_REQUEST_SIZE = 2 * 1024 * 1024  # the core caps bodies at max_message_size (1 MiB)

# Clusters (by bootstrap list) that refused an idempotent producer in this process: asked
# once, so aiokafka's error log of the refusal appears once, not on every connect.
_REFUSED: set[tuple[str, ...]] = set()


class Producer:
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None
        self.idempotent = False

    def _new(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self._config.client_options(),
            acks="all",
            enable_idempotence=idempotent,
            max_request_size=MAX_REQUEST_SIZE,
            request_timeout_ms=30000,
        )

    async def start(self) -> None:
        cluster = tuple(self._config.bootstrap_servers)
        if cluster in _REFUSED:
            await self._start_plain()
            return
        producer = self._new(idempotent=True)
        try:
            await producer.start()
            self.idempotent = True
        except KafkaConnectionError as exc:
            await producer.stop()
            raise ConnectionLost(f"cannot connect to {self._config.redacted}: {exc}") from None
        except KafkaError as exc:
            # The broker refused InitProducerId (tansu does): plain acks=all it is.
            await producer.stop()
            log.info("idempotent producer refused by %s (%s)", self._config.redacted, exc)
            _REFUSED.add(cluster)
            await self._start_plain()
            return
        self._producer = producer

    async def _start_plain(self) -> None:
        producer = self._new(idempotent=False)
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise ConnectionLost(f"cannot connect to {self._config.redacted}: {exc}") from None
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send_many(
        self, topic: str, records: list[tuple[bytes, bytes | None, Headers]]
    ) -> None:
        """Queue every record, then return once the broker holds them all (acks=all):
        the batch is pipelined instead of one round trip per record."""
        producer = self._producer
        if producer is None:
            raise PublishError(f"not connected: cannot publish to {topic!r}")
        try:
            futures = [
                await producer.send(topic, value, key=key, headers=headers)
                for value, key, headers in records
            ]
            for future in futures:
                await future
        except KafkaError as exc:
            raise PublishError(f"the broker did not take a message for {topic!r}: {exc}") from exc

    async def send(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        """Return once the broker holds the record (acks=all)."""
        producer = self._producer
        if producer is None:
            raise PublishError(f"not connected: cannot publish to {topic!r}")
        try:
            future = await producer.send(topic, value, key=key, headers=headers)
            await future
        except KafkaError as exc:
            raise PublishError(f"the broker did not take a message for {topic!r}: {exc}") from exc
