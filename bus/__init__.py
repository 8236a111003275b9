"""bus: microservices over message brokers, with one delivery contract on every broker.

import bus
orders = bus.Service("orders")

@orders.subscribe("order.placed", retry=bus.Retry(attempts=5))
async def on_placed(event: OrderPlaced, ctx: bus.Context) -> None: ...

async with bus.Bus("amqp://guest:guest@localhost/", services=[orders]) as b:
    await b.publish("order.placed", OrderPlaced("o-1", 990), key="o-1")
"""

from bus.bus import Bus
from bus.context import Context
from bus.dead_letter import DeadLetter
from bus.errors import (
    BusError,
    ConfigError,
    ConnectionLost,
    DecodeError,
    MessageTooLarge,
    PublishError,
    Reject,
    RemoteError,
    RequestTimeout,
)
from bus.retry import Retry
from bus.service import Service
from bus.transaction import Transaction

__all__ = [
    "Bus",
    "BusError",
    "ConfigError",
    "ConnectionLost",
    "Context",
    "DeadLetter",
    "DecodeError",
    "MessageTooLarge",
    "PublishError",
    "Reject",
    "RemoteError",
    "RequestTimeout",
    "Retry",
    "Service",
    "Transaction",
]
