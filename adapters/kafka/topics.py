"""Topic names and on-demand creation through the admin client.

Per group on a topic the adapter keeps two topics of its own: ``<topic>.<group>.retry``
(delayed redeliveries, consumed by that group alone) and ``<topic>.<group>.dlq`` (dead
letters, one partition so browsing is oldest first). A requester's replies arrive on
``bus.inbox.<hex>``; see inbox.py.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import tenacity
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from adapters.kafka.config import KafkaConfig
from bus.errors import ConfigError, ConnectionLost

log = logging.getLogger("bus.kafka")

# What a broker that is down or restarting raises (aiokafka times a request out with the
# builtin TimeoutError, not a KafkaError).
_UNREACHABLE = (KafkaError, TimeoutError, OSError)

_UNKNOWN_TOPIC = 3
_EXISTS = 36
_INVALID = {17: "invalid topic name", 37: "invalid partition count", 38: "replication factor"}


def _creating() -> tenacity.AsyncRetrying:
    """Five tries in about 1.5 s, then the broker is taken to be gone. Jittered: the
    services of a system starting together all create their topics at once."""
    return tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0) + tenacity.wait_random(0, 0.1),
        retry=tenacity.retry_if_exception_type(_UNREACHABLE),
        reraise=True,
    )


def retry_topic(topic: str, group: str) -> str:
    return f"{topic}.{group}.retry"


def dead_letter_topic(topic: str, group: str) -> str:
    return f"{topic}.{group}.dlq"


def replay_group(group: str) -> str:
    """The consumer group whose committed offset on a DLQ marks what was replayed."""
    return f"{group}.dlq-replay"


class Topics:
    """Creates topics once per process, idempotently (an existing topic is fine)."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._admin: AIOKafkaAdminClient | None = None
        self._known: set[str] = set()
        self._lock = anyio.Lock()

    async def start(self) -> None:
        self._admin = AIOKafkaAdminClient(**self._config.client_options(), request_timeout_ms=30000)
        await self._admin.start()

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    def known(self, topic: str) -> bool:
        return topic in self._known

    def forget(self, *names: str) -> None:
        """Create these again on their next use (a send to one failed: the broker may have
        lost it, restarted empty)."""
        self._known.difference_update(names)

    async def recreate(self, topics: dict[str, int]) -> None:
        """Create each topic again though this process made it before: an operator may
        have deleted it, or the broker restarted empty (and a broker that does not create
        topics on demand then refuses; tansu makes one on a first send with a log it never
        serves, see tests/adapters/kafka/test_kafka_restart.py)."""
        self.forget(*topics)
        await self.ensure(topics)

    async def ensure(self, topics: dict[str, int]) -> None:
        """Create each topic (name -> partitions) that this process has not seen yet."""
        wanted = {name: n for name, n in topics.items() if name not in self._known}
        if not wanted:
            return
        async with self._lock:
            wanted = {name: n for name, n in wanted.items() if name not in self._known}
            if wanted:
                await self._create(wanted)
                self._known.update(wanted)

    async def delete(self, name: str) -> None:
        """Delete ``name``, best effort: a failure is logged, never raised."""
        self._known.discard(name)
        if self._admin is None:
            return
        try:
            response = await self._admin.delete_topics([name], timeout_ms=5000)
        except Exception as exc:
            log.info("could not delete topic %s: %s", name, exc)
            return
        for _, code, *_ in response.topic_error_codes:
            if code not in (0, _UNKNOWN_TOPIC):
                log.info("could not delete topic %s: error %s", name, code)

    async def _create(self, wanted: dict[str, int]) -> None:
        if self._admin is None:
            raise ConnectionLost(f"not connected to {self._config.redacted}")
        rf = self._config.replication_factor
        new = [NewTopic(name, n, rf) for name, n in wanted.items()]
        try:
            response: Any = await _creating()(self._admin.create_topics, new)
        except _UNREACHABLE as exc:
            raise ConnectionLost(
                f"cannot create topics {sorted(wanted)} on {self._config.redacted}: {exc!r}"
            ) from None
        for name, code, *rest in response.topic_errors:
            if code in (0, _EXISTS):
                continue
            detail = rest[0] if rest else ""
            if code in _INVALID:
                raise ConfigError(f"cannot create topic {name!r} ({_INVALID[code]}): {detail}")
            raise ConnectionLost(f"cannot create topic {name!r}: error {code} {detail}")
