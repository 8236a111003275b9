"""A reply that cannot be sent does not stall the responder: the request settles as
handled (running it again would repeat its side effects for nobody), so its partition's
commits move on and a restarted responder does not run it again."""

from __future__ import annotations

import logging

import anyio
import msgspec
import pytest

import bus
from bus.message import Message
from tests.brokers.kafka import OPTIONS, Tansu
from tests.conformance.helpers import unique, wait_until


class Ask(msgspec.Struct):
    n: int


async def test_an_unsendable_reply_settles_the_request(
    kafka_broker: Tansu, caplog: pytest.LogCaptureFixture
) -> None:
    url = kafka_broker.url(OPTIONS + "&partitions=1&publish_timeout_ms=1000")
    topic, group = unique("ask"), unique("answers")
    calls: list[int] = []
    svc = bus.Service(group)

    @svc.respond(topic, concurrency=4)
    async def answer(ask: Ask) -> Ask:
        calls.append(ask.n)
        return Ask(ask.n * 10)

    caplog.set_level(logging.WARNING, "bus.requests")
    async with bus.Bus(url, presence_interval=None) as client:
        async with bus.Bus(url, services=[svc], presence_interval=None):
            # A foreign request whose reply address is no valid topic name: the broker
            # never takes the reply (it fails after publish_timeout_ms).
            await client.transport.publish(
                topic,
                Message(id=unique("m"), body=b'{"n": 1}', headers={}, reply_to="no such topic!"),
            )
            with anyio.fail_after(30):
                await wait_until(lambda: "could not send the reply" in caplog.text)
            assert await client.request(topic, Ask(2), response=Ask, timeout=20) == Ask(20)
        # Restarted: the group resumes after both requests (both settled and committed).
        async with bus.Bus(url, services=[svc], presence_interval=None):
            assert await client.request(topic, Ask(3), response=Ask, timeout=20) == Ask(30)
    assert calls == [1, 2, 3]
