"""bus.testing: test your own services fast, exactly, and on a real broker by one switch.

    from bus.testing import TestBus

    async def test_order_flow() -> None:
        async with TestBus(services=[orders, inventory]) as t:  # embedded broker, virtual clock
            await t.publish("order.placed", OrderPlaced("o-1", 990))
            await t.settle()  # until nothing is in flight; retries take no wall time
            assert t.published("stock.reserved", StockReserved) == [StockReserved("o-1")]

``TestBus`` runs the services on a private embedded broker whose retries, request
timeouts and presence run on a ``VirtualClock``; with ``--bus-url`` (pytest) or
``$BUS_TEST_URL`` the same test runs on that broker in real time. The pytest plugin
(``bus.testing.plugin``, loaded by entry point) adds that option, the ``test_bus``
fixture and readable failure texts. ``payloads(Type)`` is a Hypothesis strategy for
any msgspec payload type (``pip install 'bus[testing]'``).
"""

from bus.testing.clock import VirtualClock
from bus.testing.record import Call
from bus.testing.report import NotSettled
from bus.testing.strategies import payloads
from bus.testing.testbus import ENV_URL, TestBus

__all__ = ["ENV_URL", "Call", "NotSettled", "TestBus", "VirtualClock", "payloads"]
