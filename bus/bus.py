"""Bus: one connection to one broker, the services it runs, and the calls to speak on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
from anyio.abc import TaskGroup

from bus import codec, names, presence
from bus.clock import REAL, Clock
from bus.dead_letter import DeadLetter
from bus.dispatch import Runner
from bus.errors import BusError, ConfigError, MessageTooLarge
from bus.handling import Handle, Handling
from bus.message import JSON, MSGPACK, PAYLOAD_TYPE, Message, new_id
from bus.observed import Observed
from bus.registry import open_transport
from bus.requests import Requests
from bus.service import Service, Subscription
from bus.telemetry import Telemetry
from bus.transport import Transport
from bus.url import redact, resolve, scheme

if TYPE_CHECKING:
    from bus.relay import Relay
    from bus.store import Store
    from bus.transaction import Transaction

log = logging.getLogger("bus")
T = TypeVar("T")

DEFAULT_MAX_MESSAGE_SIZE = 1024 * 1024
# Deliveries a subscription may hold per handler it runs: a second one waits beside each
# running handler, so a handler that finishes takes its next message at once instead of
# waiting a broker round trip after its ack (RabbitMQ's prefetch; a URL's ``prefetch``
# overrides it). Held ones a graceful close gives back count as no attempt.
PREFETCH_PER_HANDLER = 2


_type_names: dict[type, str] = {}


def _type_name(cls: type) -> str:
    name = _type_names.get(cls)
    if name is None:
        name = _type_names[cls] = cls.__qualname__
    return name


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = dict(headers)
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise BusError(f"header {k!r}: {v!r} must map a str to a str")
    return out


async def _stop_fetching(runner: Runner) -> None:
    try:
        await runner.consumer.stop_fetching()
    except Exception as exc:  # closing gives it back all the same
        log.warning("stopping a consumer's intake failed: %s", exc)


def _store_for(url: str | None, services: list[Service]) -> Store | None:
    """The store named by ``url`` (unopened), or None; idempotent handlers need one."""
    if url is None:
        for service in services:
            for sub in service.subscriptions:
                if sub.idempotent:
                    raise ConfigError(
                        f"{sub.name} on {sub.topic!r} is subscribed with idempotent=True, "
                        "which needs a store: pass Bus(..., store='postgresql://...' or "
                        "'sqlite:///file.db')"
                    )
        return None
    from bus.store import open_store

    return open_store(url)


class Bus:
    """A connection to the broker at ``url`` (default ``$BUS_URL``, else ``memory://``),
    running the handlers of ``services`` while open.

    ``async with Bus(...) as b`` connects, subscribes every handler, and on exit closes
    gracefully: it stops taking messages, lets running handlers finish for up to
    ``close_timeout`` seconds (they may still publish, request and reply meanwhile), and
    gives back what it never started, not counted as an attempt.

    ``settle_timeout`` bounds how long settling one message (a retry or dead-letter copy
    the broker must confirm, an ack) may take before the message is given back to its
    group instead, so a broker that cannot take a copy never holds a consumer's capacity.

    ``store`` (``postgresql://...``, ``sqlite:///file.db``, ``sqlite://``) names the
    database of the outbox and inbox: ``transaction()`` publishes in a database
    transaction, ``subscribe(..., idempotent=True)`` handles each message once in effect,
    and a relay sends committed outbox messages while the bus is open (bus.relay).

    ``clock`` is what request timeouts and deadlines, presence, and the embedded broker's
    retry delays run on (``bus.clock``): real time unless a test passes a virtual one
    (``bus.testing``), which only ``memory://`` accepts.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        services: Iterable[Service] = (),
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        close_timeout: float = 10.0,
        content_type: str = JSON,
        presence_interval: float | Literal["env"] | None = "env",
        settle_timeout: float = 60.0,
        store: str | None = None,
        clock: Clock = REAL,
    ) -> None:
        self.url = resolve(url)
        if content_type not in (JSON, MSGPACK):
            raise ConfigError(f"content_type must be {JSON!r} or {MSGPACK!r}, not {content_type!r}")
        if max_message_size < 1:
            raise ConfigError("max_message_size must be a positive number of bytes")
        self.services = list(services)
        for service in self.services:
            if not isinstance(service, Service):
                raise ConfigError(f"services must be bus.Service objects, got {service!r}")
        if settle_timeout <= 0:
            raise ConfigError("settle_timeout must be a positive number of seconds")
        self.max_message_size = max_message_size
        self.settle_timeout = settle_timeout
        self.close_timeout = close_timeout
        self.content_type = content_type
        if presence_interval == "env":
            presence_interval = presence.interval_from_env()
        elif presence_interval is not None and not (
            isinstance(presence_interval, int | float) and 0 <= presence_interval < float("inf")
        ):
            raise ConfigError(
                f"presence_interval={presence_interval!r}: use a finite number of seconds, "
                "or 0 or None to turn presence off"
            )
        self.presence_interval = presence_interval or None
        self._announcer: presence.Announcer | None = None
        self._transport: Transport = open_transport(self.url)
        self._store = _store_for(store, self.services)
        self._relay: Relay | None = None
        self.clock = clock
        use_clock = getattr(self._transport, "use_clock", None)  # optional adapter hook
        if use_clock is not None:
            use_clock(clock)
        elif clock.virtual:
            raise ConfigError(
                f"the {scheme(self.url)}:// adapter runs on real time only: a virtual clock "
                "needs memory:// (bus.testing.TestBus picks the real clock by itself)"
            )
        self._telemetry = Telemetry(scheme(self.url))
        self._requests = Requests(
            self._transport, content_type, max_message_size=max_message_size, clock=clock
        )
        self._runners: list[Runner] = []
        self._tg: TaskGroup | None = None
        self._host: asyncio.Task[None] | None = None
        self._stop_host = anyio.Event()
        self._started = False
        self._closing = False

    def __repr__(self) -> str:
        return f"Bus({redact(self.url)!r}, services={[s.name for s in self.services]})"

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def pending_requests(self) -> int:
        """Requests of this bus waiting for a reply now."""
        return self._requests.pending

    @property
    def relay(self) -> Relay | None:
        """The relay sending this bus's committed outbox rows, while the bus is open
        with a store (``relay.idle``: nothing known left to send); else None."""
        return self._relay

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Bus:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and subscribe every handler; returns once all are subscribed."""
        if self._started:
            raise BusError("this Bus is already started")
        self._telemetry = Telemetry(scheme(self.url))
        await self._transport.connect()
        # The bus's tasks live in a host task of their own, not in the caller's scope, so
        # buses can be started and closed in any order, from any task.
        ready = anyio.Event()
        self._stop_host = anyio.Event()
        self._host = asyncio.get_running_loop().create_task(self._run_host(ready))
        await ready.wait()
        self._started = True
        try:
            if self._store is not None:
                await self._start_store(self._store)
            for service in self.services:
                for sub in service.subscriptions:
                    consumer = await self._transport.consume(
                        sub.topic, sub.group, prefetch=sub.concurrency * PREFETCH_PER_HANDLER
                    )
                    runner = Runner(sub, consumer, self._handling(sub))
                    self._runners.append(runner)
                    assert self._tg is not None
                    self._tg.start_soon(runner.run)
            if self.services and self.presence_interval:
                self._announcer = presence.Announcer(
                    self.publish, self.services, self.presence_interval, self.clock
                )
                assert self._tg is not None
                self._tg.start_soon(self._announcer.run)
        except BaseException:
            await self.close()
            raise
        log.info("bus started on %s with %d handler(s)", redact(self.url), len(self._runners))

    def _handling(self, sub: Subscription) -> Handle:
        if sub.idempotent and self._store is not None:
            from bus.inbox import idempotent

            sub = idempotent(sub, self, self._store)
        handling = Handling(sub, self, self._requests, self.settle_timeout, self.clock)
        if self._telemetry.tracing or self._telemetry.metering:
            return Observed(handling, sub, self._telemetry)
        return handling

    async def _run_host(self, ready: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                self._requests.bind(tg)
                ready.set()
                await self._stop_host.wait()
                tg.cancel_scope.cancel()
        except Exception:
            log.exception("the bus's background tasks failed")
        finally:
            self._tg = None
            ready.set()

    async def close(self, timeout: float | None = None) -> None:
        """Close gracefully (see the class); idempotent."""
        if not self._started or self._closing:
            return
        self._closing = True
        deadline = self.close_timeout if timeout is None else timeout
        with anyio.CancelScope(shield=True):
            if self._announcer is not None:
                await self._announcer.stopped()
                self._announcer = None
            # Handlers still running may publish, request and reply until they finish:
            # the bus stays started (and its transport open) until they have.
            for runner in self._runners:
                runner.stop_intake()
            with anyio.move_on_after(deadline):
                # All at once: a stop may wait until its broker has nothing in flight.
                async with anyio.create_task_group() as tg:
                    for runner in self._runners:
                        tg.start_soon(_stop_fetching, runner)
            with anyio.move_on_after(deadline):
                for runner in self._runners:
                    await runner.done.wait()
            for runner in self._runners:
                if not runner.done.is_set():
                    log.warning("close deadline passed: handlers cancelled, their messages return")
                    runner.abandon()
            for runner in self._runners:
                await runner.done.wait()
                await runner.consumer.close()
            self._runners.clear()
            self._started = False
            await self._stop_store(deadline)
            await self._requests.close()
            await self._transport.close()
            self._stop_host.set()
            if self._host is not None:
                await self._host
            self._closing = False

    # -- the store: outbox and inbox ---------------------------------------------------

    def transaction(self, connection: object | None = None) -> Transaction:
        """A database transaction on the bus's store: ``async with b.transaction() as
        tx``, then ``tx.connection`` for your SQL and ``tx.publish`` for messages sent if,
        and once, it commits. ``connection``: enlist in your own asyncpg connection (or
        SQLAlchemy AsyncConnection/AsyncSession) already in a transaction; you commit."""
        self._require_started()
        if self._store is None:
            raise ConfigError(
                "this Bus has no store: pass Bus(..., store='postgresql://host/db') "
                "or store='sqlite:///file.db' to publish in a transaction"
            )
        from bus.transaction import Transaction

        return Transaction(self, self._store, connection)

    async def _start_store(self, store: Store) -> None:
        from bus.relay import Relay

        await store.open()
        self._relay = Relay(store, self._send_relayed, self._telemetry, self.max_message_size)
        assert self._tg is not None
        self._tg.start_soon(self._relay.run)

    async def _send_relayed(self, topic: str, message: Message) -> None:
        """How the relay sends one outbox message: the transport's confirmed publish.
        The seam for a subclass to see what the outbox sends (bus.testing records it)."""
        await self._transport.publish(topic, message)

    async def _stop_store(self, deadline: float) -> None:
        """Let the relay send what is committed (up to ``deadline``), then close the store."""
        if self._relay is not None:
            await self._relay.stop(deadline)
            self._relay = None
        if self._store is not None:
            await self._store.close()

    def _require_started(self) -> None:
        if not self._started:
            raise BusError("the bus is not started: use `async with bus.Bus(...) as b`")

    # -- speaking ------------------------------------------------------------------

    def _body(self, topic: str, payload: object) -> bytes:
        names.check_topic(topic)
        body = codec.encode(payload, self.content_type)
        if len(body) > self.max_message_size:
            raise MessageTooLarge(
                f"message to {topic!r} is {len(body)} bytes, over max_message_size "
                f"({self.max_message_size} bytes): send a reference to the data instead, "
                "or raise Bus(max_message_size=...) if the broker accepts it"
            )
        return body

    def _headers(
        self, payload: object, headers: Mapping[str, str] | None, carried: str | None = None
    ) -> dict[str, str]:
        """``carried``: the traceparent of a send left unsampled (``Telemetry.unsampled``)."""
        out = _check_headers(headers) if headers else {}
        out[PAYLOAD_TYPE] = _type_name(type(payload))
        if carried is not None:
            self._telemetry.carry(out, carried)
        elif self._telemetry.tracing:
            self._telemetry.inject(out)
        return out

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish ``payload`` (a Struct or raw bytes) to ``topic``; return its message id
        once the broker holds it."""
        self._require_started()
        body = self._body(topic, payload)
        message_id = new_id()
        telemetry = self._telemetry
        if telemetry.tracing:
            carried = telemetry.unsampled()
            if carried is None:
                # Headers are made inside the span: they carry it as the handler's parent.
                with telemetry.publish_span(topic, message_id, correlation_id, decided=True):
                    await self._transport.publish(
                        topic,
                        self._message(payload, body, message_id, key, headers, correlation_id),
                    )
            else:  # a span the SDK would not sample: none, its trace context carried on
                message = self._message(
                    payload, body, message_id, key, headers, correlation_id, carried
                )
                await self._transport.publish(topic, message)
        else:
            await self._transport.publish(
                topic, self._message(payload, body, message_id, key, headers, correlation_id)
            )
        telemetry.count("published", topic)
        return message_id

    def _message(
        self,
        payload: object,
        body: bytes,
        message_id: str,
        key: str | None,
        headers: Mapping[str, str] | None,
        correlation_id: str | None,
        carried: str | None = None,
    ) -> Message:
        return Message(
            id=message_id,
            body=body,
            headers=self._headers(payload, headers, carried),
            key=key,
            correlation_id=correlation_id,
            content_type=self.content_type,
        )

    async def publish_many(
        self,
        topic: str,
        payloads: Iterable[object],
        *,
        key: str | Callable[[Any], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> list[str]:
        """Publish every payload to ``topic`` as one pipelined batch: all are sent, then
        all confirmed; return their message ids once the broker holds every one. ``key``
        is one key for all, or a function of the payload. Raises before sending anything
        if one payload is too large."""
        self._require_started()
        messages = []
        for payload in payloads:
            message_key = key(payload) if callable(key) else key
            messages.append(
                Message(
                    id=new_id(),
                    body=self._body(topic, payload),
                    headers=self._headers(payload, headers),
                    key=message_key,
                    correlation_id=correlation_id,
                    content_type=self.content_type,
                )
            )
        if not messages:
            return []
        batch = getattr(self._transport, "publish_many", None)
        if batch is not None:
            await batch(topic, messages)
        else:
            try:
                async with anyio.create_task_group() as tg:
                    for message in messages:
                        tg.start_soon(self._transport.publish, topic, message)
            except BaseExceptionGroup as failed:  # one clear error, not a group
                raise failed.exceptions[0] from None
        for _ in messages:
            self._telemetry.count("published", topic)
        return [m.id for m in messages]

    async def request(
        self,
        topic: str,
        payload: object,
        *,
        response: type[T],
        timeout: float = 5.0,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> T:
        """Send a request to ``topic`` and return its reply decoded as ``response``.

        Raises ``RequestTimeout`` after ``timeout`` seconds, ``RemoteError`` if the
        responder raised."""
        self._require_started()
        body = self._body(topic, payload)
        args: dict[str, Any] = {
            "response": response,
            "timeout": timeout,
            "key": key,
            "correlation_id": correlation_id,
        }
        if self._telemetry.tracing:
            with self._telemetry.request_span(topic):
                result = await self._requests.request(
                    topic, body, self._headers(payload, headers), **args
                )
        else:
            result = await self._requests.request(
                topic, body, self._headers(payload, headers), **args
            )
        return result  # type: ignore[no-any-return]

    # -- dead letters ----------------------------------------------------------------

    async def dead_letters(self, topic: str, *, group: str) -> AsyncGenerator[DeadLetter, None]:
        """Every dead letter of ``group`` on ``topic`` present now, oldest first; browsing
        removes nothing."""
        self._require_started()
        names.check_topic(topic)
        names.check_group(group)
        # aclosing: leaving early releases what the adapter holds (a browsing channel,
        # a reader) now; wrap this iterator in contextlib.aclosing to get the same.
        async with contextlib.aclosing(self._transport.dead_letters(topic, group)) as letters:
            async for message in letters:
                yield DeadLetter(
                    message_id=message.id, headers=dict(message.headers), body=message.body
                )

    async def replay(
        self, topic: str, *, group: str, message_ids: Collection[str] | None = None
    ) -> int:
        """Move the dead letters of ``group`` on ``topic`` back to that group; return how many.

        ``message_ids`` moves only the letters with these ids (``DeadLetter.message_id``);
        the others stay, in order, to be replayed later. An id with no letter moves nothing.
        """
        self._require_started()
        names.check_topic(topic)
        names.check_group(group)
        if message_ids is None:
            return await self._transport.replay(topic, group)
        return await self._transport.replay(topic, group, _message_ids(message_ids))


def _message_ids(ids: Collection[str]) -> frozenset[str]:
    found = None if isinstance(ids, str | bytes) else tuple(ids)
    if found is None or not all(isinstance(i, str) and i for i in found):
        raise ConfigError(
            f"message_ids must be a collection of message ids (non-empty strings), such as "
            f"[letter.message_id], not {ids!r:.200}"
        )
    return frozenset(found)
