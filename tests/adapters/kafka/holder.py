"""A group member in a process of its own that takes one record, says so, and holds it
unsettled until it is killed (for test_kafka_marks.py).

Run as: python tests/adapters/kafka/holder.py URL TOPIC GROUP
"""

from __future__ import annotations

import sys

import anyio

from adapters.kafka import KafkaTransport


async def main(url: str, topic: str, group: str) -> None:
    transport = KafkaTransport(url)
    await transport.connect()
    consumer = await transport.consume(topic, group, prefetch=10)
    delivery = await consumer.__anext__()
    print(f"took {delivery.message.body.decode()}", flush=True)
    await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
