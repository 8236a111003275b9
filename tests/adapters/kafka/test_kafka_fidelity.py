"""Issue 11 item 7 on Kafka: the copies the adapter writes of a foreign record (a retry,
a dead letter, a replayed letter) carry its key, body and headers as a plain producer
sent them, byte for byte: values that are not UTF-8, null values and repeated keys
included. What the bus adds is UTF-8 and only ever added.

Read back with a plain aiokafka consumer, never through the adapter's own decoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from hypothesis import given
from hypothesis import strategies as st

import bus
from adapters.kafka import topics
from adapters.kafka.config import parse
from adapters.kafka.convert import CONTENT_TYPE, DUE, MESSAGE_ID, from_record, headers_of, to_record
from bus.message import ATTEMPT, DLQ_PREFIX, FIRST_FAILED_AT, Message
from tests.conformance.helpers import DEADLINE, letters_of, unique, wait_until

BODY = b"\x00\xff not json at all"
KEY = b"\xffk\x80ey"  # not UTF-8 either
SENT: list[tuple[str, bytes | None]] = [
    ("x-bin", b"\xff\xfe\x00raw"),
    ("x-rep", b"one"),
    ("x-null", None),
    ("x-rep", b"\xc3\x28two"),
    ("x-text", "ünï".encode()),
    ("x-rep", b"three"),
]
SENT_NAMES = {name for name, _ in SENT}
# What a copy may carry beyond the original: the id it was logged under, the retry
# loop's bookkeeping, a retry record's due time and the dead-letter entries.
ADDED = {MESSAGE_ID, ATTEMPT, FIRST_FAILED_AT, DUE}


def originals(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    return [(name, value) for name, value in headers if name in SENT_NAMES]


def added(headers: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
    """The entries the bus added, decoded (each must be strict UTF-8, and single)."""
    extra = [(name, value) for name, value in headers if name not in SENT_NAMES]
    assert len({name for name, _ in extra}) == len(extra), extra
    out = {}
    for name, value in extra:
        assert name in ADDED or name.startswith(DLQ_PREFIX), name
        assert value is not None
        out[name] = value.decode("utf-8")  # strict: raises on anything else
    return out


async def read_raw(servers: list[str], topic: str, count: int) -> list[Any]:
    """The first ``count`` records of partition 0.. of ``topic``, as a plain consumer reads
    them (every partition, in offset order per partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        with anyio.fail_after(DEADLINE):
            while not parts:
                await consumer.topics()
                parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            got: list[Any] = []
            while len(got) < count:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got.extend(records)
        return sorted(got, key=lambda r: r.timestamp)
    finally:
        await consumer.stop()


def assert_faithful(record: Any) -> dict[str, str]:
    """The record's key, body and original headers are what the plain producer sent;
    returns the entries the bus added."""
    assert record.key == KEY
    assert record.value == BODY
    assert originals(record.headers) == SENT
    return added(record.headers)


async def test_retry_dead_letter_and_replay_copies_of_a_foreign_record_are_byte_identical(
    kafka_url: str,
) -> None:
    topic, group = unique("t"), unique("g")
    servers = parse(kafka_url).bootstrap_servers
    seen: list[bus.Context] = []
    svc = bus.Service(group)

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.05, max_backoff=0.05))
    async def fail_then_reject(body: bytes, ctx: bus.Context) -> None:
        seen.append(ctx)
        if ctx.attempt == 1:
            raise ValueError("first try fails")
        raise bus.Reject("second try rejects")

    async with bus.Bus(kafka_url, services=[svc]) as b:
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(topic, BODY, key=KEY, headers=SENT)
        finally:
            await producer.stop()
        first_id = f"{topic}-{meta.partition}-{meta.offset}"
        [letter] = await letters_of(b, topic, group, 1)
        assert letter.message_id == first_id

        dlq_topic = topics.dead_letter_topic(topic, group)
        retry_topic = topics.retry_topic(topic, group)
        [parked] = await read_raw(servers, dlq_topic, 1)
        extra = assert_faithful(parked)
        assert extra[MESSAGE_ID] == first_id
        assert extra["bus-dlq-reason"] == "rejected"
        assert ATTEMPT not in extra and DUE not in extra
        assert "content-type" not in dict(parked.headers)  # missing stays missing

        [retried] = await read_raw(servers, retry_topic, 1)
        extra = assert_faithful(retried)
        assert (extra[MESSAGE_ID], extra[ATTEMPT]) == (first_id, "2")

        assert await b.replay(topic, group=group) == 1
        await wait_until(lambda: len(seen) == 4)  # replayed: fails once more, then rejects
        await letters_of(b, topic, group, 1)  # the replayed letter is parked again
        # The retry topic now holds: the first retry, the replayed letter, its retry.
        _, replayed, again = await read_raw(servers, retry_topic, 3)
        extra = assert_faithful(replayed)
        assert extra[MESSAGE_ID] == first_id and DUE in extra
        assert extra["bus-dlq-reason"] == "rejected"  # a letter moves back as it is
        assert extra.keys() - {DUE} == added(parked.headers).keys()
        assert_faithful(again)
        _, reparked = await read_raw(servers, dlq_topic, 2)
        extra = assert_faithful(reparked)
        assert extra["bus-dlq-original-topic"] == topic
        assert extra[MESSAGE_ID] == first_id

    # The handler saw the same decoded message every time, with the same id.
    assert {ctx.message_id for ctx in seen} == {first_id}
    decoded = {k: v for k, v in seen[0].headers.items() if k in SENT_NAMES}
    assert decoded == {
        "x-bin": "\ufffd\ufffd\x00raw",
        "x-rep": "three",
        "x-null": "",
        "x-text": "ünï",
    }
    for ctx in seen[1:]:
        assert {k: v for k, v in ctx.headers.items() if k in SENT_NAMES} == decoded
    assert [ctx.attempt for ctx in seen] == [1, 2, 1, 2]


def record_of(
    headers: Sequence[tuple[str, bytes | None]], key: bytes | None
) -> ConsumerRecord[bytes, bytes]:
    """A consumed record as aiokafka hands one out."""
    return ConsumerRecord("t", 0, 7, 0, 0, key, b"{}", None, 0, 2, tuple(headers))


def test_the_merge_keeps_unchanged_native_entries_and_writes_the_rest_as_utf8() -> None:
    message, _ = from_record(record_of([*SENT, ("content-type", b""), ("x-gone", b"\xff")], KEY))
    assert isinstance(message.native, ConsumerRecord)
    headers = {k: v for k, v in message.headers.items() if k != "x-gone"}
    headers["x-text"] = "changed"
    headers["x-new"] = "néw"
    key, written = to_record(message.with_headers(headers), [(DUE, b"5")])
    assert key == KEY
    kept = [entry for entry in SENT if entry[0] != "x-text"]
    assert written == [
        *kept,
        ("content-type", b""),  # read as JSON and still JSON: as it was
        (MESSAGE_ID, b"t-0-7"),
        ("x-text", b"changed"),
        ("x-new", "néw".encode()),
        (DUE, b"5"),
    ]
    # A changed key is written anew; a message the core built has no native form.
    key, _ = to_record(Message(id="i", body=b"", key="k2", native=message.native))
    assert key == b"k2"
    assert to_record(Message(id="i", body=b"", key="k"))[1][0] == (MESSAGE_ID, b"i")


_NAMES = st.sampled_from(
    ["traceparent", "tracestate", "baggage", "x-other", MESSAGE_ID, CONTENT_TYPE]
)
_VALUES = st.none() | st.binary(max_size=8) | st.text(max_size=8).map(str.encode)


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=8))
def test_headers_read_without_the_envelope_are_the_envelopes(
    headers: list[tuple[str, bytes | None]],
) -> None:
    """What telemetry reads of a record before its message is built (headers_of) is what
    the built message's headers hold: repeats, null values and bytes that are not UTF-8
    included, and never one of the bus's own."""
    record = record_of(headers, None)
    names = frozenset({"traceparent", "tracestate", "baggage", MESSAGE_ID})
    built = from_record(record)[0].headers
    assert headers_of(record, names) == {k: v for k, v in built.items() if k in names}
