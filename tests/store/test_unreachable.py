"""A database out of reach: the bus does not start, b.transaction() raises a clear error
within the connect timeout, and once it is back transactions work and the relay sends
what was committed before. The database is cut with a loopback proxy in front of it
(the shared PostgreSQL itself is never stopped)."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import anyio
import pytest

import bus
from brokers.tansu import free_port
from bus.store import StoreUnavailable
from tests.brokers.kafka_proxy import Proxy
from tests.conformance.helpers import unique

from .helpers import Step


async def test_a_bus_whose_store_is_unreachable_does_not_start(memory_url: str) -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(StoreUnavailable, match="cannot be reached") as caught:
        async with bus.Bus(
            memory_url, store=f"postgresql://u:secret@127.0.0.1:{port}/x?connect_timeout=2"
        ):
            pass
    assert "secret" not in str(caught.value), "the password never shows"


async def test_transaction_raises_while_the_database_is_cut_and_works_again_after(
    pg_url: str, memory_url: str
) -> None:
    topic = unique("cut")
    got: list[int] = []
    consumer = bus.Service(unique("g"))

    @consumer.subscribe(topic)
    async def on_step(step: Step) -> None:
        got.append(step.seq)

    parts = urlsplit(pg_url)
    proxy = Proxy(free_port(), parts.port or 5432)
    via_proxy = parts._replace(netloc=f"postgres@127.0.0.1:{proxy.port}").geturl()
    async with anyio.create_task_group() as tg:
        await proxy.serve(tg)
        store = f"{via_proxy}&connect_timeout=2&poll_interval=0.2"
        async with bus.Bus(memory_url, services=[consumer], store=store) as b:
            async with b.transaction() as tx:
                await tx.publish(topic, Step("k", 1))
            with anyio.fail_after(10):
                while got != [1]:
                    await anyio.sleep(0.01)
            proxy.down()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="cannot be reached"):
                async with b.transaction() as tx:
                    await tx.publish(topic, Step("k", 2))
            assert time.monotonic() - started < 8, "the error comes within the connect timeout"
            proxy.up()
            with anyio.fail_after(20):
                while True:  # the pool reconnects on its next use
                    try:
                        async with b.transaction() as tx:
                            await tx.publish(topic, Step("k", 3))
                        break
                    except StoreUnavailable:
                        await anyio.sleep(0.1)
                while got != [1, 3]:
                    await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
