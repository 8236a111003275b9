"""A short tour of the bus on the embedded broker: publish, request-reply, a retried
handler and a dead letter. ``python -m services.demo [--url URL]``."""

from __future__ import annotations

import argparse
import logging

import anyio
import msgspec

import bus


class OrderPlaced(msgspec.Struct):
    order_id: str
    total_cents: int


class GetOrder(msgspec.Struct):
    order_id: str


class Order(msgspec.Struct):
    order_id: str
    total_cents: int
    status: str


orders = bus.Service("orders")
placed: dict[str, Order] = {}
calls: dict[str, int] = {}


@orders.subscribe("order.placed", retry=bus.Retry(attempts=3, backoff=0.05, max_backoff=0.5))
async def on_placed(event: OrderPlaced, ctx: bus.Context) -> None:
    calls[event.order_id] = ctx.attempt
    if event.total_cents <= 0:
        raise bus.Reject(f"order {event.order_id} has a non-positive total")
    if event.order_id == "o-flaky" and ctx.attempt < 3:
        raise ConnectionError(f"payment gateway busy (attempt {ctx.attempt})")
    if event.order_id == "o-broken":
        raise RuntimeError("inventory service returned garbage")
    placed[event.order_id] = Order(event.order_id, event.total_cents, "placed")


@orders.respond("order.get")
async def get_order(req: GetOrder) -> Order:
    try:
        return placed[req.order_id]
    except KeyError:
        raise LookupError(f"no order {req.order_id!r}") from None


async def main(url: str | None) -> None:
    async with bus.Bus(url, services=[orders]) as b:
        print(f"bus: {b!r}")
        for order_id, total in [("o-1", 990), ("o-flaky", 1500), ("o-broken", 200), ("o-0", 0)]:
            await b.publish("order.placed", OrderPlaced(order_id, total), key=order_id)
        print("published 4 orders")

        with anyio.fail_after(10):
            while len(calls) < 4 or calls.get("o-flaky", 0) < 3 or calls.get("o-broken", 0) < 3:
                await anyio.sleep(0.01)
            letters: list[bus.DeadLetter] = []
            while len(letters) < 2:
                letters = [d async for d in b.dead_letters("order.placed", group="orders")]
                await anyio.sleep(0.01)

        order = await b.request("order.get", GetOrder("o-1"), response=Order, timeout=5.0)
        print(f"request order.get o-1 -> {order}")
        print(f"o-flaky succeeded on attempt {calls['o-flaky']} after two retries")
        try:
            await b.request("order.get", GetOrder("o-missing"), response=Order, timeout=5.0)
        except bus.RemoteError as exc:
            print(f"request order.get o-missing -> RemoteError: {exc}")

        for letter in letters:
            h = letter.headers
            print(
                f"dead letter {letter.body.decode()}: reason={letter.reason} "
                f"attempts={letter.attempts} error={h['bus-dlq-exception-type']}: "
                f"{h['bus-dlq-exception-message']}"
            )
    print("demo done")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default=None, help="broker URL (default $BUS_URL or memory://)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    anyio.run(main, args.url)


if __name__ == "__main__":
    cli()
