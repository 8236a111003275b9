"""The connection: opened loudly once, re-established with backoff whenever it drops.

Reconnection is composition: the Link only brings the connection back (tenacity's
schedule) and runs ``on_connect`` (declare the exchange); each ChannelKeeper notices its
channel died and re-opens it, replaying its own declarations and consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
import tenacity
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.abc import AbstractChannel as RawChannel

from adapters.rabbitmq.config import RabbitConfig
from adapters.rabbitmq.errors import connection_lost
from bus.errors import ConnectionLost

log = logging.getLogger("bus.rabbitmq")

FIRST_CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
"""How long closing a channel may wait for the broker's answer: a channel on a connection
that died unnoticed would otherwise wait for the heartbeat to notice."""
OnConnect = Callable[[AbstractConnection], Awaitable[None]]


class Link:
    """One AMQP connection that comes back after it is lost, until closed."""

    def __init__(self, config: RabbitConfig, on_connect: OnConnect) -> None:
        self.config = config
        self._on_connect = on_connect
        self._conn: AbstractConnection | None = None
        self._ready = asyncio.Event()
        self._closing = False
        self._reconnect: asyncio.Task[None] | None = None
        self._opened = False
        self._again = False

    @property
    def closing(self) -> bool:
        return self._closing

    async def open(self) -> None:
        """Connect the first time; ConnectionLost naming the (redacted) URL if we cannot."""
        try:
            conn = await aio_pika.connect(self.config.amqp_url, timeout=FIRST_CONNECT_TIMEOUT)
        except Exception as exc:
            raise connection_lost(exc, self.config.redacted) from None
        try:
            await self._adopt(conn)
        except Exception as exc:
            await conn.close()
            raise connection_lost(exc, self.config.redacted) from None
        self._opened = True

    async def ready(self) -> AbstractConnection:
        """The open connection, waiting while it is being re-established."""
        while True:
            if self._closing:
                raise ConnectionLost(f"the connection to {self.config.redacted} is closed")
            if not self._opened:
                raise ConnectionLost(f"not connected to {self.config.redacted}: call connect()")
            conn = self._conn
            if conn is not None and self._ready.is_set() and not conn.is_closed:
                return conn
            await self._ready.wait()

    async def channel(self, *, confirms: bool) -> AbstractChannel:
        """A new channel on the current connection (waiting for one)."""
        conn = await self.ready()
        channel = conn.channel(publisher_confirms=confirms, on_return_raises=confirms)
        await channel
        return channel

    async def close(self) -> None:
        self._closing = True
        self._ready.set()  # wake waiters so they see _closing
        task = self._reconnect
        if task is not None:
            # A connect attempt can swallow one cancellation (the driver's own timeout
            # handling): cancel until the task has really ended, a bounded number of times.
            for _ in range(50):
                if task.done():
                    break
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: its end is expected, not an unhandled error
        if self._conn is not None:
            try:
                await self._conn.close()
            except Exception as exc:  # already gone: nothing left to close
                log.debug("closing the connection to %s: %s", self.config.redacted, exc)

    async def _adopt(self, conn: AbstractConnection) -> None:
        await self._on_connect(conn)
        conn.close_callbacks.add(self._on_close)
        self._conn = conn
        self._ready.set()

    def _on_close(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._closing or sender is not self._conn:
            return  # closed by us, or an old connection's late notice
        self._ready.clear()
        log.warning("lost the connection to %s (%s); reconnecting", self.config.redacted, exc)
        if self._reconnect is not None and not self._reconnect.done():
            self._again = True  # lost again just as the reconnect finished
            return
        self._reconnect = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        old, self._conn = self._conn, None
        if old is not None:
            with contextlib.suppress(Exception):  # free what the dead connection held
                await old.close()
        self._again = True
        while self._again and not self._closing:
            self._again = False
            retrying = tenacity.AsyncRetrying(
                wait=tenacity.wait_exponential(multiplier=0.1, max=5.0)
                + tenacity.wait_random(0, 0.1),
                retry=tenacity.retry_if_exception(
                    lambda exc: isinstance(exc, Exception) and not self._closing
                ),
                before_sleep=self._log_attempt,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    conn = await aio_pika.connect(
                        self.config.amqp_url, timeout=FIRST_CONNECT_TIMEOUT
                    )
                    try:
                        await self._adopt(conn)
                    except BaseException:
                        await conn.close()
                        raise
            log.warning("reconnected to %s", self.config.redacted)

    def _log_attempt(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "reconnecting to %s failed (attempt %d: %s); retrying",
            self.config.redacted,
            state.attempt_number,
            exc,
        )


class ChannelKeeper:
    """Keeps one channel open: opens it and runs ``setup`` (declare, qos, consume), and
    when it dies while wanted, opens a new one the same way, with backoff."""

    def __init__(
        self,
        link: Link,
        setup: Callable[[RawChannel], Awaitable[None]],
        *,
        confirms: bool,
        what: str,
    ) -> None:
        self._link = link
        self._setup = setup
        self._confirms = confirms
        self._what = what
        self._channel: AbstractChannel | None = None
        self._raw: RawChannel | None = None
        self._up = asyncio.Event()
        self._closed = False
        self._watch: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        """Open the channel the first time; errors propagate."""
        await self._open()
        self._watch = asyncio.get_running_loop().create_task(self._keep())

    def now(self) -> RawChannel | None:
        """The channel if it is open now, without waiting."""
        raw = self._raw
        return raw if raw is not None and not raw.is_closed else None

    async def current(self) -> RawChannel:
        """The open channel, waiting while it is re-opened."""
        while True:
            if self._closed or self._link.closing:
                raise ConnectionLost(f"{self._what} is closed")
            if self._watch is None:
                raise ConnectionLost(f"{self._what} is not open: call connect() first")
            raw = self._raw
            if raw is not None and not raw.is_closed:
                return raw
            self._up.clear()
            await self._up.wait()

    async def close(self) -> None:
        """Close the channel: what it held unsettled goes back to its queues."""
        self._closed = True
        self._up.set()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        channel, self._channel, self._raw = self._channel, None, None
        if channel is not None and not channel.is_closed:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await channel.close()
            except Exception as exc:  # the connection may be gone already: nothing to return
                log.debug("closing %s: %s", self._what, exc)

    async def _open(self) -> None:
        channel = await self._link.channel(confirms=self._confirms)
        try:
            raw = await channel.get_underlay_channel()
            await self._setup(raw)
        except BaseException:
            await channel.close()
            raise
        raw.on_consumer_cancel_callbacks.add(self._on_cancelled)
        self._channel, self._raw = channel, raw
        self._up.set()

    def _on_cancelled(self, _frame: object) -> None:
        """The broker cancelled our consumer (its queue was deleted, say): drop the
        channel, so it is re-opened and its queue declared again."""
        channel = self._channel
        if channel is not None and not self._closed:
            task = asyncio.ensure_future(channel.close())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _keep(self) -> None:
        while not self._closed:
            channel = self._channel
            if channel is not None:
                await channel.closed()
            if self._closed or self._link.closing:
                return
            self._up.clear()
            log.warning("%s was lost; re-opening it", self._what)
            retrying = tenacity.AsyncRetrying(
                wait=tenacity.wait_exponential(multiplier=0.05, max=5.0),
                retry=tenacity.retry_if_exception(self._should_retry),
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        await self._open()
            except Exception:
                if self._closed or self._link.closing:
                    return
                raise

    def _should_retry(self, exc: BaseException) -> bool:
        if self._closed or self._link.closing:
            return False
        log.warning("re-opening %s failed (%s); retrying", self._what, exc)
        return isinstance(exc, Exception)
