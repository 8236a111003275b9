"""Closing while the broker is unreachable ends within a bound: an ephemeral consumer's
close used to wait for the publishing channel to come back before deleting its
dead-letter queue, i.e. for as long as the outage lasted."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from adapters.rabbitmq import RabbitTransport
from tests.brokers.rabbitmq import PORT, url_for

from .proxy import Proxy

BOUND = 15.0  # the adapter's own bounds are 5 s a step; the machine is shared and slow


async def test_closing_an_ephemeral_consumer_during_an_outage_is_bounded(
    rabbitmq_run: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "bus.rabbitmq")
    proxy = Proxy()
    await proxy.start()
    t = RabbitTransport(url_for(rabbitmq_run).replace(f":{PORT}/", f":{proxy.port}/"))
    await t.connect()
    try:
        watcher = await t.consume("presence.close", "watch", prefetch=5, ephemeral=True)
        await proxy.stop()  # every connection cut, reconnects refused until the end
        with anyio.fail_after(BOUND):  # until the transport knows and is reconnecting
            while "lost the connection" not in caplog.text:
                await anyio.sleep(0.01)
        started = time.monotonic()
        with anyio.fail_after(BOUND):
            await watcher.stop_fetching()
            await watcher.close()
        took = time.monotonic() - started
        with anyio.fail_after(BOUND):
            await t.close()
    finally:
        await proxy.stop()
    assert took < BOUND
