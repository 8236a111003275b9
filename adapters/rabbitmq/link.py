"""The connection: opened loudly once, re-established with backoff whenever it drops.

A URL may name several nodes of a cluster (config.py). The first connect tries them in
the URL's order and fails only when none answers; a reconnect starts from the node after
the one that was lost and goes round them, one node per try of the backoff schedule.

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

from adapters.rabbitmq import probe
from adapters.rabbitmq.config import RabbitConfig
from adapters.rabbitmq.errors import connection_lost
from bus.errors import ConfigError, ConnectionLost

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
        self._nodes = config.nodes
        self._at = 0
        """Index in ``_nodes`` of the node connected to (or last connected to)."""
        self._next = 0
        """Index of the node the next reconnect attempt tries."""

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def node(self) -> str:
        """``host:port`` of the node this link is connected to (or was last)."""
        return self._nodes[self._at][0]

    async def open(self) -> None:
        """Connect the first time, trying each node of the URL in order: ConfigError or
        ConnectionLost naming the (redacted) URL if none lets us in."""
        failures: list[tuple[str, BaseException]] = []
        for index, (node, _) in enumerate(self._nodes):
            try:
                await self._connect(index)
            except Exception as exc:
                failures.append((node, exc))
                if len(self._nodes) > 1:
                    log.warning(
                        "cannot connect to RabbitMQ at %s of %s (%s); trying the next node",
                        node,
                        self.config.redacted,
                        exc,
                    )
                continue
            self._opened = True
            log.info("connected to RabbitMQ at %s (%s)", node, self.config.redacted)
            return
        if not self.config.tls:
            failures = [(node, await _asked_again(node, exc)) for node, exc in failures]
        raise self._first_connect_error(failures)

    def _first_connect_error(self, failures: list[tuple[str, BaseException]]) -> Exception:
        """A refused login or vhost (a ConfigError) when any node said so, else
        ConnectionLost naming what each node answered."""
        errors = [connection_lost(exc, self.config.redacted) for _, exc in failures]
        if len(failures) == 1:
            return errors[0]
        for error in errors:
            if isinstance(error, ConfigError):
                return error
        each = "; ".join(f"{node}: {str(exc) or type(exc).__name__}" for node, exc in failures)
        return ConnectionLost(
            f"cannot reach any node of RabbitMQ at {self.config.redacted}: {each}"
        )

    async def _connect(self, index: int) -> None:
        """Open a connection to node ``index`` and adopt it (``on_connect`` run on it)."""
        conn = await aio_pika.connect(self._nodes[index][1], timeout=FIRST_CONNECT_TIMEOUT)
        try:
            await self._on_connect(conn)
            self._at = index
            self._adopt(conn)
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise

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

    def _adopt(self, conn: AbstractConnection) -> None:
        conn.close_callbacks.add(self._on_close)
        self._conn = conn
        self._ready.set()

    def _on_close(self, sender: Any, exc: BaseException | None = None) -> None:
        if self._closing or sender is not self._conn:
            return  # closed by us, or an old connection's late notice
        self._ready.clear()
        log.warning(
            "lost the connection to %s at %s (%s); reconnecting",
            self.config.redacted,
            self.node,
            exc,
        )
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
            self._next = (self._at + 1) % len(self._nodes)  # the one after the node lost
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
                    index = self._next
                    try:
                        await self._connect(index)
                    except BaseException:
                        self._next = (index + 1) % len(self._nodes)  # round the nodes
                        raise
            log.warning("reconnected to %s at %s", self.config.redacted, self.node)

    def _log_attempt(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        tried = self._nodes[(self._next - 1) % len(self._nodes)][0]
        log.warning(
            "reconnecting to %s at %s failed (attempt %d: %s); retrying",
            self.config.redacted,
            tried,
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

    def renew(self, raw: RawChannel) -> None:
        """Close ``raw`` if it is still this keeper's channel, so a fresh one is opened
        (its declarations and consumers replayed). For a channel the broker nacked a
        publish on: RabbitMQ 3.10 nacks every later publish on a channel whose first
        publish to a quorum queue came while that queue's leader was down (a node just
        lost), until the channel is closed."""
        channel = self._channel
        if self._closed or self._raw is not raw or channel is None or channel.is_closed:
            return
        log.info("%s had a publish refused; opening a new one", self._what)
        self._raw = None  # nothing more goes on it: current() waits for the new one
        self._up.clear()
        task = asyncio.ensure_future(channel.close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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


async def _asked_again(node: str, exc: BaseException) -> BaseException:
    """``exc``, or a clearer ConnectionLost when ``node`` cut a plain client off because
    it is a TLS listener."""
    if probe.cut_off(exc) and await probe.speaks_tls(node):
        return ConnectionLost(
            f"{node} closed the connection: it is a TLS listener; use amqps:// "
            "(with cafile naming its CA, unless the system trusts it)"
        )
    return exc
