"""A record refused for its size is a MessageTooLarge, not a plain PublishError: the core
then parks a dead letter without its stack trace instead of not at all."""

from __future__ import annotations

import pytest

import bus
from adapters.kafka import KafkaTransport
from adapters.kafka.producer import MAX_REQUEST_SIZE
from bus.message import Message, new_id


async def test_a_record_over_the_request_size_is_message_too_large(
    transport: KafkaTransport, names: tuple[str, str]
) -> None:
    topic, _ = names
    huge = Message(id=new_id(), body=b"x" * (MAX_REQUEST_SIZE + 1))
    with pytest.raises(bus.MessageTooLarge, match="too large"):
        await transport.publish(topic, huge)
    # The transport is still usable after the refusal.
    await transport.publish(topic, Message(id=new_id(), body=b"{}"))
