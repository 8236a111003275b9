"""The one producer of a transport: acks=all, idempotent where the broker allows it.

It connects first, so its start says why a connect failed: an untrusted certificate, a
plain client on a TLS port, a refused login, each a ConnectionLost naming the cause.

Every send is awaited until the broker holds the record; failures become PublishError.
A send the broker does not confirm within ``publish_timeout_ms`` raises PublishError too:
aiokafka's own request timeout bounds the wait for metadata, for room in a full batch and
a plain producer's unanswered batch; deadlines.py bounds the confirmation of the rest (an
idempotent producer retries an unanswered batch forever).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import ssl
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from adapters.kafka.batches import Batches
from adapters.kafka.config import KafkaConfig
from adapters.kafka.convert import Headers
from adapters.kafka.deadlines import Deadlines
from bus.errors import ConnectionLost, MessageTooLarge, PublishError

log = logging.getLogger("bus.kafka")

MAX_REQUEST_SIZE = 2 * 1024 * 1024  # the core caps bodies at max_message_size (1 MiB)

# Clusters (by bootstrap list) that refused an idempotent producer in this process: asked
# once, so the fallback is tried and logged once, not on every connect.
_REFUSED: set[tuple[str, ...]] = set()

# Set (to a cell that start() clears) while the idempotent producer starts: the tasks
# aiokafka creates meanwhile inherit it, so the filter below drops the error line that
# reports our own producer's refused InitProducerId, and nobody else's.
_probing: contextvars.ContextVar[list[bool]] = contextvars.ContextVar("bus_kafka_probing")
_INIT_PID_ERROR = "Unexpected error during InitProducerIdRequest: %s"


class _QuietProbe(logging.Filter):
    """Drops aiokafka's ERROR line for an InitProducerId refused while we probe: we log
    one line of our own saying what we fell back to."""

    def filter(self, record: logging.LogRecord) -> bool:
        cell = _probing.get(None)
        return not (cell and cell[0] and record.msg == _INIT_PID_ERROR)


logging.getLogger("aiokafka.producer.sender").addFilter(_QuietProbe())

# Set (to a list) while our producer starts: aiokafka logs why each bootstrap server could
# not be reached, then raises only "Unable to bootstrap"; the filter below keeps the
# logged causes, so the ConnectionLost names the real one (an untrusted certificate, a
# refused login).
_connecting: contextvars.ContextVar[list[BaseException]] = contextvars.ContextVar(
    "bus_kafka_connecting"
)
PROBE_TIMEOUT = 3.0  # seconds a TLS probe of a server that closed on us may take


class _ConnectCauses(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        causes = _connecting.get(None)
        msg = record.msg
        if causes is not None and isinstance(msg, str) and msg.startswith("Unable connect to"):
            args = record.args if isinstance(record.args, tuple) else ()
            if args and isinstance(args[-1], BaseException):
                causes.append(args[-1])
        return True


logging.getLogger("aiokafka").addFilter(_ConnectCauses())


class Producer:
    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer: AIOKafkaProducer | None = None
        self.idempotent = False
        self._deadlines = Deadlines(config.publish_timeout_ms / 1000)
        self._batches: Batches | None = None

    def _new(self, idempotent: bool) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self._config.client_options(),
            acks="all",
            enable_idempotence=idempotent,
            max_request_size=MAX_REQUEST_SIZE,
            request_timeout_ms=self._config.publish_timeout_ms,
        )

    async def start(self) -> None:
        """Connect; ConnectionLost naming the cause (and never the password) if that fails."""
        cluster = tuple(self._config.bootstrap_servers)
        if self._config.tls and (stalled := await _handshake_stalls(self._config)):
            raise ConnectionLost(f"cannot connect to {self._config.redacted}: {stalled}")
        if cluster in _REFUSED:
            await self._start_plain()
            return
        producer = self._new(idempotent=True)
        probing = [True]
        token = _probing.set(probing)
        causes: list[BaseException] = []
        causes_token = _connecting.set(causes)
        try:
            await producer.start()
            self.idempotent = True
        except KafkaConnectionError as exc:
            await producer.stop()
            raise await self._cannot_connect(exc, causes) from None
        except KafkaError as exc:
            # The broker refused InitProducerId (tansu does): plain acks=all it is.
            await producer.stop()
            log.warning(
                "%s refuses idempotent producers (InitProducerId: %s): publishing with "
                "acks=all, not idempotent (a send retried after a lost confirm may be "
                "written twice)",
                self._config.redacted, type(exc).__name__,
            )  # fmt: skip
            _REFUSED.add(cluster)
            await self._start_plain()
            return
        except Exception as exc:  # aiokafka's SCRAM client fails on a refusal (KeyError)
            await producer.stop()
            raise await self._cannot_connect(exc, causes) from None
        finally:
            probing[0] = False  # later errors of this producer's tasks are shown
            _probing.reset(token)
            _connecting.reset(causes_token)
        self._started(producer)

    async def _start_plain(self) -> None:
        producer = self._new(idempotent=False)
        causes: list[BaseException] = []
        token = _connecting.set(causes)
        try:
            await producer.start()
        except Exception as exc:
            await producer.stop()
            raise await self._cannot_connect(exc, causes) from None
        finally:
            _connecting.reset(token)
        self._started(producer)

    def _started(self, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._batches = Batches(producer, self._deadlines.watch, self._failure)

    def _failure(self, topic: str, exc: BaseException) -> BaseException:
        """The bus error for a send, or a shared batch, that failed."""
        if isinstance(exc, KafkaTimeoutError | RequestTimedOutError):
            return self._unconfirmed(topic)
        if isinstance(exc, KafkaError):
            return _refused(topic, exc)
        return PublishError(f"the broker did not take a message for {topic!r}: {exc}")

    async def _cannot_connect(
        self, exc: BaseException, causes: list[BaseException]
    ) -> ConnectionLost:
        config = self._config
        cause = _cause(config, exc, causes) or await _probe(config) or str(exc)
        return ConnectionLost(f"cannot connect to {config.redacted}: {cause}")

    async def stop(self) -> None:
        if self._batches is not None:
            batches, self._batches = self._batches, None
            await batches.close(self._config.publish_timeout_ms / 1000)
        await self._deadlines.close()
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    async def send_many(
        self, topic: str, records: list[tuple[bytes, bytes | None, Headers]]
    ) -> None:
        """Queue every record, then return once the broker holds them all (acks=all):
        the batch is pipelined instead of one round trip per record."""
        futures: list[asyncio.Future[Any]] = []
        try:
            for value, key, headers in records:
                queued = self.queue(topic, value, key, headers)
                futures.append(queued or await self._send_slowly(topic, value, key, headers))
            for future in futures:
                await future
        except BaseException as exc:
            _forget(futures)
            if isinstance(exc, KafkaError):
                raise self._failure(topic, exc) from exc
            raise

    def queue(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> asyncio.Future[None] | None:
        """The future of ``value`` queued in a shared batch (see batches.py): it fails with
        the bus's error if the batch does. None when the topic's partitions are not known
        yet (or the producer is stopping): ``send`` then takes the client's own way."""
        self._connected(topic)
        batches = self._batches
        return batches.add(topic, value, key, headers, partition) if batches else None

    def forget(self, topic: str) -> None:
        """The topic was made again: its partitions are read again at the next send."""
        if self._batches is not None:
            self._batches.forget(topic)

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> None:
        """Return once the broker holds the record (acks=all). ``partition`` skips the
        partitioner where the caller knows it (a one-partition reply topic)."""
        if queued := self.queue(topic, value, key, headers, partition):
            await queued
            return
        future = None
        try:
            future = await self._send_slowly(topic, value, key, headers, partition)
            await future
        except KafkaError as exc:
            if future is not None:
                _forget([future])
            raise self._failure(topic, exc) from exc

    async def _send_slowly(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: Headers,
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        """aiokafka's own send (it waits for the topic's metadata), its confirmation
        watched by the deadlines."""
        future: asyncio.Future[Any] = await self._connected(topic).send(
            topic, value, key=key, headers=headers, partition=partition
        )
        self._deadlines.watch(future)
        return future

    def _connected(self, topic: str) -> AIOKafkaProducer:
        if self._producer is None:
            raise PublishError(f"not connected: cannot publish to {topic!r}")
        return self._producer

    def _unconfirmed(self, topic: str) -> PublishError:
        return PublishError(
            f"the broker did not confirm a message for {topic!r} within "
            f"{self._config.publish_timeout_ms} ms (publish_timeout_ms in the URL): check that "
            f"{self._config.redacted} is reachable and that the topic's partition leaders "
            "answer; the message may still arrive later"
        )


def _cause(config: KafkaConfig, exc: BaseException, causes: list[BaseException]) -> str | None:
    """Why the first connect failed, in words, from what aiokafka raised and logged; None
    when all it says is that the broker closed the connection."""
    login = f"user {config.sasl_username!r} with SASL {config.sasl_mechanism}"
    if config.sasl_mechanism is not None and isinstance(exc, KeyError | ValueError):
        # aiokafka's SCRAM client reads the server's final message, which carries an
        # error instead of a signature when the login is refused.
        return f"authentication failed: the broker refused {login} (check user and password)"
    for err in reversed(causes):
        if isinstance(err, ssl.SSLCertVerificationError):
            why = str(err.verify_message)
            if "mismatch" in why.lower():  # "Hostname mismatch", "IP address mismatch"
                fix = "connect by a name it holds (or set ssl_check_hostname=false)"
            else:
                fix = "name the CA that signed it in ssl_cafile"
            return f"TLS: the broker's certificate is not trusted ({why}): {fix}"
        if isinstance(err, ssl.SSLError):
            return (
                f"TLS handshake failed ({err.reason or err}): is this a TLS listener? "
                "kafka:// is for a plain one"
            )
        if isinstance(err, SaslAuthenticationFailed | AuthenticationFailedError):
            return f"authentication failed: the broker refused {login}: {err}"
        if isinstance(err, UnsupportedSaslMechanismError):
            return f"authentication failed: {err}"
        if isinstance(err, OSError):
            return f"{err.strerror or err} (is the broker running, and on this port?)"
    return None


async def _probe(config: KafkaConfig) -> str | None:
    """The broker closed the connection: say whether the first server speaks TLS to a
    kafka:// client, or name the SASL settings to check."""
    host, _, port = config.bootstrap_servers[0].rpartition(":")
    if not config.tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                _, writer = await asyncio.open_connection(host, int(port), ssl=context)
            writer.close()
            return (
                f"the broker closed the connection: {host}:{port} is a TLS listener, "
                "use kafka+ssl:// (with ssl_cafile naming its CA)"
            )
        except (OSError, TimeoutError):
            pass
    if config.sasl_mechanism is not None:
        return (
            f"the broker closed the connection while user {config.sasl_username!r} logged "
            f"in with SASL {config.sasl_mechanism}: check sasl_mechanism (the broker may not "
            "offer it) and the credentials"
        )
    return None


async def _handshake_stalls(config: KafkaConfig) -> str | None:
    """kafka+ssl:// to a plain listener: the broker reads the TLS hello as the start of a
    request and waits for the rest, so the handshake never ends and aiokafka would wait
    its whole request timeout. A handshake to the first server that stalls PROBE_TIMEOUT
    says so at once. Anything else (it completes, fails, or the port is closed) is left
    to the client to find and report."""
    host, _, port = config.bootstrap_servers[0].rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=context)
    except TimeoutError:
        return (
            f"{host}:{port} did not answer a TLS handshake within {PROBE_TIMEOUT:g} s: it "
            "looks like a plain listener; use kafka:// (or the broker's TLS port)"
        )
    except (OSError, ValueError):
        return None
    writer.close()
    return None


def _refused(topic: str, exc: KafkaError) -> PublishError | MessageTooLarge:
    """The bus error for a send the broker (or the client) refused: MessageTooLarge when it
    was for its size, so the core can send less (a dead letter without its stack trace)."""
    if isinstance(exc, MessageSizeTooLargeError | RecordListTooLargeError | RecordTooLargeError):
        return MessageTooLarge(f"the broker refused a message for {topic!r} as too large: {exc}")
    return PublishError(f"the broker did not take a message for {topic!r}: {exc}")


def _forget(futures: list[asyncio.Future[object]]) -> None:
    """No longer awaited: a later failure of these is expected, not an unretrieved error."""
    for future in futures:
        future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[object]) -> None:
    if not future.cancelled():
        future.exception()
