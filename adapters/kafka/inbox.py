"""A requester's inbox: a one-partition topic ``bus.inbox.<hex>`` read with no group.

The topic is new, so reading it from the beginning sees every reply sent to it. Closing
the inbox deletes the topic (best effort), so each process that ever made a request does
not leave a topic behind. A reply sent after that is lost, as it would be unread anyway;
on a broker that creates topics on demand (``auto.create.topics.enable``, tansu) it
re-creates the topic, which then stays: clean those up with ``kafka-topics --delete`` on
the ``bus.inbox.`` prefix. A process killed outright leaves its inbox topic too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError

from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import from_record
from bus.message import Message

log = logging.getLogger("bus.kafka")

INBOX_PREFIX = "bus.inbox."


def retrying_reads(what: str) -> tenacity.AsyncRetrying:
    """A reader's schedule on a broker error: tries until it works (or the reader is
    closed), 0.1 s apart at first, then up to 5 s, jittered so that many readers do
    not come back at once. Each call of the returned object starts afresh."""

    def warn(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed, retrying in %.1f s: %s", what, wait, exc)

    return tenacity.AsyncRetrying(
        wait=tenacity.wait_random_exponential(multiplier=0.1, max=5.0, min=0.1),
        retry=tenacity.retry_if_exception_type(KafkaError),
        before_sleep=warn,
    )


def new_address() -> str:
    return f"{INBOX_PREFIX}{uuid.uuid4().hex}"


class KafkaInbox:
    """bus.transport.Inbox on its own reply topic."""

    def __init__(
        self, config: KafkaConfig, address: str, on_close: Callable[[str], Awaitable[None]]
    ) -> None:
        self.address = address
        self._on_close = on_close
        self._tp = TopicPartition(address, 0)
        self._client = AIOKafkaConsumer(
            **config.client_options(),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
        )
        self._replies: asyncio.Queue[Message | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        await self._client.start()
        self._client.assign([self._tp])
        await self._client.seek_to_beginning(self._tp)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        retrying = retrying_reads(f"reading inbox {self.address}")
        client = self._client
        while True:
            try:
                # Straight to the client; the retry schedule only once it failed (entering
                # tenacity for every fetch cost more than a small fetch of replies).
                try:
                    batches: dict[TopicPartition, list[Any]] = await client.getmany(
                        self._tp, timeout_ms=1000
                    )
                except KafkaError as exc:
                    log.warning("reading inbox %s failed, retrying: %s", self.address, exc)
                    batches = await retrying(client.getmany, self._tp, timeout_ms=1000)
            except ConsumerStoppedError:
                return
            for records in batches.values():
                for record in records:
                    self._replies.put_nowait(from_record(record)[0])

    def __aiter__(self) -> KafkaInbox:
        return self

    async def __anext__(self) -> Message:
        if self._closed and self._replies.empty():
            raise StopAsyncIteration
        reply = await self._replies.get()
        if reply is None:
            self._replies.put_nowait(None)  # wake any other reader too
            raise StopAsyncIteration
        return reply

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._replies.put_nowait(None)
        try:
            await self._client.stop()
        finally:
            await self._on_close(self.address)
