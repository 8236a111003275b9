"""The gateway's answers to bad input and to failures behind it, and that the shop keeps
running after them."""

from __future__ import annotations

import httpx

import bus
from services import contracts as c
from services.config import GOOD_CARD
from services.gateway import serving
from services.load import client_for, place
from tests.services.conftest import running_shop, shop_config

GOOD = {"customer": "a@example.com", "card": GOOD_CARD, "lines": [{"sku": "widget", "quantity": 1}]}


def error_of(response: httpx.Response) -> str:
    text: str = response.json()["error"]
    return text


async def test_bad_input_gets_its_status_and_the_shop_keeps_running(memory_url: str) -> None:
    cfg = shop_config(memory_url)
    async with running_shop(cfg) as (shop, base_url), client_for(base_url, cfg.api_key) as http:
        missing = await http.post("/orders", json=GOOD, headers={"x-api-key": ""})
        assert missing.status_code == 401 and "X-API-Key" in error_of(missing)
        wrong = await http.get("/orders/anything", headers={"x-api-key": "guess"})
        assert wrong.status_code == 401

        malformed = await http.post("/orders", content=b'{"customer": "a@example.com",')
        assert malformed.status_code == 422 and "not valid JSON" in error_of(malformed)

        wrong_type = {**GOOD, "lines": [{"sku": "widget", "quantity": "two"}]}
        typed = await http.post("/orders", json=wrong_type)
        assert typed.status_code == 422
        assert "Expected `int`, got `str`" in error_of(typed)
        assert "$.lines[0].quantity" in error_of(typed)

        for bad, where in [
            ({**GOOD, "card": "not-a-card"}, "$.card"),
            ({**GOOD, "lines": []}, "$.lines"),
            ({k: v for k, v in GOOD.items() if k != "customer"}, "customer"),
            ({**GOOD, "coupon": "FREE"}, "coupon"),
            ([GOOD], "object"),
        ]:
            response = await http.post("/orders", json=bad)
            assert response.status_code == 422, bad
            assert where in error_of(response), (bad, error_of(response))

        unknown = await http.get("/orders/no-such-order")
        assert unknown.status_code == 404 and "no-such-order" in error_of(unknown)
        assert (await http.get("/orders/x", params={"wait": "soon"})).status_code == 422

        # nothing of that reached a service, and they all still work
        assert shop.orders.store == {}
        assert (await http.get("/health")).json()["status"] == "ok"
        out = await place(http, GOOD, deadline=20)
        assert out.status == c.CONFIRMED
        fetched = await http.get(f"/orders/{out.order_id}")
        assert fetched.status_code == 200 and fetched.json()["status"] == c.CONFIRMED


async def test_no_orders_service_is_a_504_and_an_unhealthy_gateway(memory_url: str) -> None:
    cfg = shop_config(memory_url, request_timeout=0.3)
    async with serving(cfg) as base_url, client_for(base_url, cfg.api_key) as http:
        response = await http.post("/orders", json=GOOD)
        assert response.status_code == 504 and "did not answer" in error_of(response)
        assert response.json()["order_id"]  # it may exist: the client can look it up
        health = await http.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"


async def test_an_orders_service_that_fails_is_a_502_naming_the_error(memory_url: str) -> None:
    cfg = shop_config(memory_url)
    broken = bus.Service("orders")

    @broken.respond(cfg.topic(c.ORDER_CREATE))
    async def create(req: c.CreateOrder) -> c.Order:
        raise RuntimeError("the database is on fire")

    async with (
        bus.Bus(memory_url, services=[broken]),
        serving(cfg) as base_url,
        client_for(base_url, cfg.api_key) as http,
    ):
        response = await http.post("/orders", json=GOOD)
        assert response.status_code == 502
        assert "builtins.RuntimeError: the database is on fire" in error_of(response)


async def test_a_repeated_post_with_an_idempotency_key_makes_one_order(memory_url: str) -> None:
    cfg = shop_config(memory_url)
    async with running_shop(cfg) as (shop, base_url), client_for(base_url, cfg.api_key) as http:
        key = {"idempotency-key": "checkout-7f3a"}
        first = await http.post("/orders", json=GOOD, headers=key)
        again = await http.post("/orders", json=GOOD, headers=key)
        other = await http.post("/orders", json=GOOD)
        assert first.status_code == again.status_code == other.status_code == 202
        assert first.json()["order_id"] == again.json()["order_id"] != other.json()["order_id"]
        assert first.headers["location"] == f"/orders/{first.json()['order_id']}"
        assert len(shop.orders.store) == 2
