"""Message <-> AMQP properties survive the wire encoding (pamqp), for any text."""

from __future__ import annotations

from aiormq.abc import DeliveredMessage
from hypothesis import given
from hypothesis import strategies as st
from pamqp import frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from adapters.rabbitmq.convert import KEY_HEADER, properties, to_message
from bus.message import Message

# AMQP field names are short strings (pamqp truncates past 128 bytes); the broker's own
# x-death bookkeeping is not part of a message.
names = st.text(min_size=1, max_size=40).filter(
    lambda k: not k.startswith("x-") and k != KEY_HEADER and len(k.encode()) <= 128
)
short = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
# An empty AMQP property is an absent one: these travel as None, so none is generated.
prop = short.filter(bool)


def over_the_wire(props: Basic.Properties, body: bytes) -> DeliveredMessage:
    data = frame.marshal(ContentHeader(0, len(body), props), 1)
    _, _, header = frame.unmarshal(data)
    assert isinstance(header, ContentHeader)
    return DeliveredMessage(
        delivery=Basic.Deliver(delivery_tag=1), header=header, body=body, channel=None
    )


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
    assert to_message(over_the_wire(properties(sent), body)) == sent
