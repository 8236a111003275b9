"""The HTTP API: ``POST /orders``, ``GET /orders/{id}`` (``?wait=SECONDS`` long-polls for
a final state), ``GET /health``.

An ``Idempotency-Key`` header makes a repeated POST return the order the first made.
Errors, each a JSON ``{"error": ...}``: 401 without the right ``X-API-Key``; 422 for a
body that is not JSON or not a valid order (the reason says which field); 404 for an
unknown order; 504 when orders does not answer in time (``bus.RequestTimeout``; for a
POST it names the ``order_id``, which may exist: GET it, or POST again with the key); 502
when it answers with an error (``bus.RemoteError``); 503 when the broker is unreachable.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import bus
from services import contracts as c
from services.config import Config
from services.gateway.tracing import TracingMiddleware

log = logging.getLogger("services.gateway")
NOT_FOUND = c.error_name(c.OrderNotFound)
HEALTH_TIMEOUT = 2.0


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status, headers, "application/json")


class HttpError(Exception):
    def __init__(self, status: int, text: str, **extra: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text
        self.response = _json(status, {"error": text, **extra})


def order_id_for(idempotency_key: str | None) -> str:
    """A new order id, or the same one for every POST with the same Idempotency-Key (so a
    client may repeat a POST whose answer it never got, and get the one order)."""
    if idempotency_key is None:
        return uuid.uuid4().hex
    return uuid.uuid5(uuid.NAMESPACE_URL, f"bus-shop:{idempotency_key}").hex


class Gateway:
    """The routes, over one bus opened for the app's lifetime.

    The gateway handles nothing from the bus, only requests through it; its bus runs
    ``.service``, a ``bus.Service`` without handlers named like the shop's others, so it
    announces itself through presence (``bus status``, the console) as they do."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.service = bus.Service(cfg.name("gateway"))
        self.bus: bus.Bus | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with bus.Bus(self.cfg.url, services=[self.service]) as b:
            self.bus = b
            try:
                yield
            finally:
                self.bus = None

    async def ask(self, topic: str, payload: object, timeout: float = 0.0) -> c.Order:
        """Request ``topic`` from orders; bus failures become HTTP errors."""
        if self.bus is None:
            raise HttpError(503, "the gateway is not connected to the bus")
        try:
            return await self.bus.request(
                self.cfg.topic(topic),
                payload,
                response=c.Order,
                timeout=self.cfg.request_timeout + timeout,
            )
        except bus.RequestTimeout as exc:
            raise HttpError(504, f"the orders service did not answer in time: {exc}") from None
        except bus.RemoteError as exc:
            if exc.error_type == NOT_FOUND:
                raise HttpError(404, exc.remote_message) from None
            log.warning("orders failed on %s: %s", topic, exc)
            raise HttpError(502, f"the orders service failed: {exc}") from None
        except bus.BusError as exc:
            log.warning("bus error on %s: %s", topic, exc)
            raise HttpError(503, f"the message bus is unavailable: {exc}") from None

    def check_key(self, request: Request) -> None:
        given = request.headers.get("x-api-key", "")
        if not hmac.compare_digest(given.encode(), self.cfg.api_key.encode()):
            raise HttpError(401, "missing or wrong API key: send it in the X-API-Key header")

    async def post_order(self, request: Request) -> Response:
        self.check_key(request)
        body = await request.body()
        try:
            new = msgspec.json.decode(body, type=c.NewOrder)
        except msgspec.ValidationError as exc:
            raise HttpError(422, f"invalid order: {exc}") from None
        except msgspec.DecodeError as exc:
            raise HttpError(422, f"the body is not valid JSON: {exc}") from None
        order_id = order_id_for(request.headers.get("idempotency-key"))
        create = c.CreateOrder(order_id, new.customer, new.card, new.lines)
        try:
            order = await self.ask(c.ORDER_CREATE, create)
        except HttpError as exc:
            if exc.status == 504:  # it may exist: say where to look, or POST again
                raise HttpError(504, exc.text, order_id=order_id) from None
            raise
        return _json(202, order, {"location": f"/orders/{order.order_id}"})

    async def get_order(self, request: Request) -> Response:
        self.check_key(request)
        order_id: str = request.path_params["order_id"]
        try:
            wait = float(request.query_params.get("wait", "0"))
        except ValueError:
            raise HttpError(422, "wait must be a number of seconds") from None
        if not 0 <= wait <= 30:
            raise HttpError(422, "wait must lie between 0 and 30 seconds")
        return _json(200, await self.ask(c.ORDER_GET, c.GetOrder(order_id, wait), wait))

    async def health(self, request: Request) -> Response:
        """200 when orders answers through the bus (a probe for an order nobody has)."""
        status: dict[str, Any] = {"bus": "connected" if self.bus else "closed"}
        if self.bus is not None:
            try:
                await self.bus.request(
                    self.cfg.topic(c.ORDER_GET),
                    c.GetOrder("health-probe"),
                    response=c.Order,
                    timeout=min(HEALTH_TIMEOUT, self.cfg.request_timeout),
                )
                status["orders"] = "ok"
            except bus.RemoteError as exc:
                status["orders"] = "ok" if exc.error_type == NOT_FOUND else str(exc)
            except bus.BusError as exc:
                status["orders"] = f"unavailable: {exc}"
        healthy = status.get("orders") == "ok"
        return _json(200 if healthy else 503, {"status": "ok" if healthy else "degraded", **status})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return exc.response


def create_app(cfg: Config | None = None) -> Starlette:
    """The gateway's ASGI app for ``cfg`` (default: from the environment)."""
    gateway = Gateway(cfg or Config.from_env())
    app = Starlette(
        routes=[
            Route("/orders", gateway.post_order, methods=["POST"]),
            Route("/orders/{order_id}", gateway.get_order, methods=["GET"]),
            Route("/health", gateway.health, methods=["GET"]),
        ],
        exception_handlers={HttpError: _http_error},
        lifespan=gateway.lifespan,
    )
    app.add_middleware(TracingMiddleware)
    app.state.gateway = gateway
    return app
