"""Issue 11 item 9 on Kafka: a broker that refuses the idempotent producer (tansu) gets
one warning of ours saying what the adapter fell back to, not aiokafka's ERROR line;
aiokafka's line still shows for anyone else's producer."""

from __future__ import annotations

import logging

import pytest

from adapters.kafka import KafkaTransport, producer
from bus.message import Message, new_id
from tests.conformance.helpers import unique


async def test_a_refused_idempotent_producer_is_one_quiet_line_of_ours(
    kafka_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(producer, "_REFUSED", set())  # as in a fresh process
    caplog.set_level(logging.INFO)
    for _ in range(2):  # a second connect asks no more
        t = KafkaTransport(kafka_url)
        await t.connect()
        try:
            await t.publish(unique("t"), Message(id=new_id(), body=b"x"))
            assert t._producer.idempotent is False
        finally:
            await t.close()
    init_pid = [r for r in caplog.records if "InitProducerId" in r.getMessage()]
    assert [(r.name, r.levelno) for r in init_pid] == [("bus.kafka", logging.WARNING)]
    assert "publishing with acks=all, not idempotent" in init_pid[0].getMessage()
    assert not [r for r in caplog.records if r.name.startswith("aiokafka.producer")]


def test_the_filter_leaves_other_producers_errors_alone(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    sender = logging.getLogger("aiokafka.producer.sender")
    sender.error(producer._INIT_PID_ERROR, "UnknownError")  # not while we probe
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
