"""The envelope: what travels between the core and an adapter.

A Message is frozen; ack, retry and dead-letter live on the Delivery that carries it
(see bus.transport). Metadata an adapter maps to native broker fields has its own
attribute; everything else rides in ``headers`` under the names below.
"""

from __future__ import annotations

import itertools
import os

import msgspec

JSON = "application/json"
MSGPACK = "application/msgpack"

# Header names. Adapters carry them as native headers (AMQP headers, Kafka record headers).
CAUSATION_ID = "bus-causation-id"
PAYLOAD_TYPE = "bus-payload-type"
ATTEMPT = "bus-attempt"  # present only on retried copies; absent means 1
FIRST_FAILED_AT = "bus-first-failed-at"  # present only on retried copies
REQUEST_ID = "bus-request-id"  # on a reply: the id of the request it answers
DEADLINE = "bus-deadline"  # on a request: UNIX time (s) after which nobody waits for it
ERROR_TYPE = "bus-error-type"  # on an error reply: module.QualName of the responder's error
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# Bookkeeping of the retry loop; never part of a message's original headers.
RETRY_HEADERS = frozenset({ATTEMPT, FIRST_FAILED_AT})

DLQ_PREFIX = "bus-dlq-"
DLQ_REASON = "bus-dlq-reason"
DLQ_EXCEPTION_TYPE = "bus-dlq-exception-type"
DLQ_EXCEPTION_MESSAGE = "bus-dlq-exception-message"
DLQ_EXCEPTION_STACKTRACE = "bus-dlq-exception-stacktrace"
DLQ_ORIGINAL_TOPIC = "bus-dlq-original-topic"
DLQ_CONSUMER_GROUP = "bus-dlq-consumer-group"
DLQ_ATTEMPTS = "bus-dlq-attempts"
DLQ_FIRST_FAILED_AT = "bus-dlq-first-failed-at"
DLQ_FAILED_AT = "bus-dlq-failed-at"
DLQ_HOST = "bus-dlq-host"


_id_prefix = os.urandom(10).hex()
_id_counter = itertools.count()


def _new_prefix() -> None:
    """A forked child never shares its parent's prefix (set at fork, not checked per id)."""
    global _id_prefix, _id_counter
    _id_prefix, _id_counter = os.urandom(10).hex(), itertools.count()


os.register_at_fork(after_in_child=_new_prefix)


def new_id() -> str:
    """A fresh message id: 32 hex characters, unique across processes.

    A random per-process prefix and a counter: as unique as a uuid4 for our purposes, at
    a fraction of its cost on the publish path.
    """
    return f"{_id_prefix}{next(_id_counter):012x}"


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One message as the broker holds it.

    ``headers`` must not be mutated once the message is built: adapters and fan-out
    share one instance.
    """

    id: str
    body: bytes
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    key: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    content_type: str | None = JSON
    native: object = None
    """What the adapter read this message from, in the broker's own form (AMQP properties,
    Kafka record), or None for a message the core built. Opaque to the core and
    never sent: an adapter writing a copy (retry, dead letter, give-back) starts from it,
    so values the envelope cannot hold (AMQP tables and ints, non-UTF-8 or repeated Kafka
    headers, AMQP priority, timestamp, type...) survive unchanged."""

    def with_headers(self, headers: dict[str, str]) -> Message:
        """A copy of this message with ``headers`` in place of its own."""
        return msgspec.structs.replace(self, headers=headers)
