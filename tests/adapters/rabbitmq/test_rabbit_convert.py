"""Message <-> AMQP properties survive the wire encoding (pamqp), for any text."""

from __future__ import annotations

import datetime
import struct

import msgspec
from aiormq.abc import DeliveredMessage
from hypothesis import given
from hypothesis import strategies as st
from pamqp.commands import Basic

from adapters.rabbitmq.convert import KEY_HEADER, properties, to_message
from bus.message import Message
from tests.adapters.rabbitmq.foreign import (
    TYPED_FIELDS,
    RawHeaders,
    field,
    long_bytes,
    over_the_wire,
    typed,
)

# AMQP field names are short strings (pamqp truncates past 128 bytes); the broker's own
# x-death bookkeeping is not part of a message.
names = st.text(min_size=1, max_size=40).filter(
    lambda k: not k.startswith("x-") and k != KEY_HEADER and len(k.encode()) <= 128
)
short = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
# An empty AMQP property is an absent one: these travel as None, so none is generated.
prop = short.filter(bool)


@given(
    body=st.binary(max_size=200),
    headers=st.dictionaries(names, st.text(max_size=200), max_size=8),
    key=st.none() | short,
    correlation_id=st.none() | prop,
    reply_to=st.none() | prop,
    content_type=st.sampled_from(["application/json", "application/msgpack", "text/plain"]),
    message_id=prop,
)
def test_every_field_survives_the_wire(
    body: bytes,
    headers: dict[str, str],
    key: str | None,
    correlation_id: str | None,
    reply_to: str | None,
    content_type: str,
    message_id: str,
) -> None:
    sent = Message(
        id=message_id,
        body=body,
        headers=headers,
        key=key,
        correlation_id=correlation_id,
        reply_to=reply_to,
        content_type=content_type,
    )
    got = to_message(over_the_wire(properties(sent), body))
    assert got.native is not None
    assert msgspec.structs.replace(got, native=None) == sent


# -- copies of delivered messages (Message.native) -------------------------------------


FOREIGN_TABLE = b"".join(
    [
        *TYPED_FIELDS,
        field(KEY_HEADER, b"I" + struct.pack(">i", 42)),
        field("x-delivery-count", b"l" + struct.pack(">q", 3)),
        field("x-death", b"A" + long_bytes(b"")),
    ]
)


def foreign(**props: object) -> DeliveredMessage:
    raw = RawHeaders(long_bytes(FOREIGN_TABLE), **props)
    return over_the_wire(raw, b"body")


def test_a_copy_keeps_every_header_value_and_property_the_envelope_cannot_hold() -> None:
    stamp = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    delivered = foreign(
        priority=7,
        timestamp=stamp,
        message_type="order",
        app_id="legacy",
        expiration="60000",
        user_id="guest",
        content_encoding="gzip",
    )
    read = delivered.header.properties.headers
    message = to_message(delivered)
    assert message.key == "42" and message.content_type == "application/json"
    headers = {**message.headers, "bus-dlq-reason": "rejected"}
    copy = to_message(over_the_wire(properties(message.with_headers(headers), user="guest"), b""))
    props = copy.native
    assert isinstance(props, Basic.Properties)
    expected = {k: v for k, v in read.items() if not k.startswith("x-")}
    expected["bus-dlq-reason"] = "rejected"
    assert typed(props.headers) == typed(expected)
    assert (props.priority, props.timestamp, props.message_type) == (7, stamp, "order")
    assert (props.app_id, props.expiration, props.user_id) == ("legacy", "60000", "guest")
    assert props.content_encoding == "gzip"
    assert props.content_type is None, "a missing content type stays missing"
    assert props.message_id == message.id and props.delivery_mode == 2
    # a user_id naming anyone but us would have RabbitMQ refuse the copy
    other = to_message(over_the_wire(properties(message, user="someone-else"), b""))
    assert isinstance(other.native, Basic.Properties) and other.native.user_id is None


def test_a_copy_writes_changed_and_new_headers_as_strings_and_drops_removed_ones() -> None:
    message = to_message(foreign())
    headers = dict(message.headers)
    headers["int32"] = "8"  # changed by the core
    del headers["double"]  # removed
    headers["bus-attempt"] = "2"  # new
    copy = to_message(over_the_wire(properties(message.with_headers(headers)), b""))
    assert isinstance(copy.native, Basic.Properties)
    sent = copy.native.headers
    assert sent["int32"] == "8" and sent["bus-attempt"] == "2" and "double" not in sent
    assert sent["uint32"] == 4_000_000_000 and sent[KEY_HEADER] == 42  # unchanged: native
    assert list(sent)[:3] == ["float", "not-utf8", "text"], "unchanged ones keep their place"
    assert copy.headers == headers


def test_a_foreign_message_without_an_id_gets_the_same_one_on_every_delivery() -> None:
    first = to_message(foreign(app_id="a"))
    props = RawHeaders(
        long_bytes(FOREIGN_TABLE.replace(struct.pack(">q", 3), struct.pack(">q", 9)))
    )
    props.app_id = "a"
    again = over_the_wire(props, b"body")
    again.delivery.redelivered = True  # type: ignore[union-attr]
    assert to_message(again).id == first.id, "the broker's bookkeeping is not the message"
    assert len(first.id) == 32 and int(first.id, 16) >= 0
    assert to_message(foreign(app_id="b")).id != first.id
    other_body = over_the_wire(RawHeaders(long_bytes(FOREIGN_TABLE), app_id="a"), b"other")
    assert to_message(other_body).id != first.id
