"""A load of orders sent through the gateway's HTTP API with a real HTTP client (httpx),
each followed until it reaches a final state; used by the demo and the tests."""

from __future__ import annotations

import dataclasses
import random
import time
import uuid
from typing import Any

import anyio
import httpx

from services import contracts as c
from services.config import DECLINED_CARD, GOOD_CARD

POLL_WAIT = 5.0  # seconds each GET /orders/{id}?wait= long-polls


@dataclasses.dataclass
class Outcome:
    """How one order went, as the client saw it."""

    body: dict[str, Any]
    order_id: str = ""
    status: str = "not placed"
    reason: str = ""
    compensations: list[str] = dataclasses.field(default_factory=list)
    latency: float = 0.0  # seconds from POST to seeing the final state
    http_errors: list[int] = dataclasses.field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in c.FINAL_STATES


def client_for(base_url: str, api_key: str) -> httpx.AsyncClient:
    """An HTTP client of the gateway that sends the API key."""
    return httpx.AsyncClient(
        base_url=base_url, headers={"x-api-key": api_key}, timeout=POLL_WAIT + 30.0
    )


def make_order(
    rng: random.Random, n: int, *, declined: float = 0.1, scarce: str | None = None
) -> dict[str, Any]:
    """The JSON body of a random order: a share ``declined`` pay with a declined card;
    one in ten asks for a unit of ``scarce`` too."""
    lines = [{"sku": "widget", "quantity": rng.randint(1, 3), "price_cents": 250}]
    if rng.random() < 0.5:
        lines.append({"sku": "gadget", "quantity": 1, "price_cents": 1999})
    if scarce and rng.random() < 0.1:
        lines.append({"sku": scarce, "quantity": 1, "price_cents": 9900})
    card = DECLINED_CARD if rng.random() < declined else GOOD_CARD
    return {"customer": f"customer-{n}@example.com", "card": card, "lines": lines}


async def place(client: httpx.AsyncClient, body: dict[str, Any], deadline: float) -> Outcome:
    """POST the order, then long-poll it until it is final or ``deadline`` seconds pass."""
    out = Outcome(body)
    started = time.perf_counter()
    response = await client.post("/orders", json=body)
    if response.status_code != 202:
        out.http_errors.append(response.status_code)
        return out
    order = response.json()  # final already when a repeated POST found its order settled
    out.order_id, out.status = order["order_id"], order["status"]
    out.reason, out.compensations = order["reason"], order["compensations"]
    with anyio.move_on_after(deadline):
        while out.status not in c.FINAL_STATES:
            response = await client.get(f"/orders/{out.order_id}", params={"wait": POLL_WAIT})
            if response.status_code != 200:
                out.http_errors.append(response.status_code)
                await anyio.sleep(0.1)
                continue
            order = response.json()
            out.status, out.reason = order["status"], order["reason"]
            out.compensations = order["compensations"]
    out.latency = time.perf_counter() - started
    return out


RETRIED = (502, 503, 504)  # the API says: POST again with the same Idempotency-Key


async def place_until_answered(
    base_url: str, api_key: str, body: dict[str, Any], *, deadline: float
) -> Outcome:
    """POST one order (again on 502/503/504, with one Idempotency-Key, as the API asks)
    and follow it to a final state for up to ``deadline`` seconds; the outcome's
    ``http_errors`` lists every refusal on the way."""
    headers = {"x-api-key": api_key, "idempotency-key": uuid.uuid4().hex}
    refused: list[int] = []
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=POLL_WAIT + 30.0
    ) as client:
        while True:
            out = await place(client, body, deadline=deadline)
            if out.order_id or not out.http_errors or out.http_errors[-1] not in RETRIED:
                out.http_errors[:0] = refused
                return out
            refused += out.http_errors
            await anyio.sleep(0.2)


async def run_load(
    base_url: str,
    api_key: str,
    *,
    orders: int,
    concurrency: int = 8,
    declined: float = 0.1,
    scarce: str | None = None,
    seed: int = 1,
    deadline: float = 60.0,
) -> list[Outcome]:
    """Send ``orders`` orders, ``concurrency`` at a time; return every outcome."""
    rng = random.Random(seed)
    bodies = [make_order(rng, n, declined=declined, scarce=scarce) for n in range(orders)]
    outcomes: list[Outcome] = []
    todo = iter(bodies)

    async def worker() -> None:
        # A client (one connection) per worker: httpx's shared pool scans all of its
        # connections on every request, which costs more than the whole shop at 32.
        async with client_for(base_url, api_key) as client:
            for body in todo:
                outcomes.append(await place(client, body, deadline))

    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return outcomes


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` of ``values`` lie (nearest rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]
