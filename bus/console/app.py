"""The console's web application: one page and a JSON API under ``/api``.

| route | what |
| --- | --- |
| ``POST /api/login`` ``{"token": ...}`` | opens a session (the only route open without one) |
| ``POST /api/logout`` | closes it |
| ``GET /api/services`` | every instance heard through presence, with its status |
| ``GET /api/flow`` | handled/failed/retried/dead-lettered per second, per topic and group |
| ``GET /api/events`` | server-sent events: ``update`` with services and flow, every second |
| ``GET /api/dead-letters`` | each subscription's dead letters, counted |
| ``GET /api/dead-letters/{topic}?group=G[&limit=N]`` | browse them (nothing is removed) |
| ``POST /api/dead-letters/{topic}/replay`` ``{"group": G}`` | move them back to the group |
| ``POST /api/dead-letters/{topic}/replay`` ``{"group": G, "message_id": ID}`` | that one alone |
| ``GET /api/asyncapi[?format=yaml]`` | the AsyncAPI document of the running services |

Every error is JSON, ``{"error": "what was wrong and what to do"}``: 400 for a bad name or
body, 401 without a session or with a wrong token, 404 for a topic or group no running
service subscribes to (or a dead letter to replay that is not there), 503 when the broker
fails.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bus import names
from bus.asyncapi import render
from bus.bus import Bus
from bus.console.auth import Auth
from bus.console.contracts import contracts
from bus.console.flow import Flow
from bus.console.watch import Watcher
from bus.dead_letter import DeadLetter
from bus.errors import BusError, ConfigError
from bus.message import DLQ_PREFIX
from bus.service import Service
from bus.url import redact, resolve

COUNT_CAP = 1000
"""Dead letters counted per subscription at most (counting browses them all)."""
LIST_LIMIT = 100
WRONG_TOKEN_DELAY = 0.25
_STATIC = Path(__file__).parent / "static"
_NO_STORE = {"cache-control": "no-store"}
# The page loads nothing from elsewhere, and no other site may frame it.
_PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _json(body: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status, _NO_STORE, "application/json")


def _letter(letter: DeadLetter) -> dict[str, Any]:
    h = letter.headers
    body_text = letter.body.decode("utf-8", "replace")
    pretty = None
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        pretty = json.dumps(json.loads(letter.body), indent=2, ensure_ascii=False)
    return {
        "message_id": letter.message_id,
        "reason": letter.reason,
        "exception_type": letter.exception_type,
        "exception_message": letter.exception_message,
        "stacktrace": h.get(f"{DLQ_PREFIX}exception-stacktrace"),
        "attempts": letter.attempts,
        "first_failed_at": h.get(f"{DLQ_PREFIX}first-failed-at"),
        "failed_at": h.get(f"{DLQ_PREFIX}failed-at"),
        "host": h.get(f"{DLQ_PREFIX}host"),
        "headers": h,
        "body": body_text,
        "body_json": pretty,
        "size": len(letter.body),
    }


class Console:
    """The state behind the routes: one bus connection, the presence watcher, the
    services whose contracts to show."""

    def __init__(
        self,
        url: str | None,
        auth: Auth,
        services: Sequence[Service] = (),
        *,
        step: float = 2.0,
        window: float = 300.0,
        update_every: float = 1.0,
    ) -> None:
        self.url = resolve(url)
        self.auth = auth
        self.services = list(services)
        self.watcher = Watcher(Flow(step, window))
        self.update_every = update_every
        self.bus: Bus | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with Bus(self.url, presence_interval=None) as b, anyio.create_task_group() as tg:
            tg.start_soon(self.watcher.run, b.transport)
            with anyio.fail_after(30):
                await self.watcher.listening.wait()
            self.bus = b
            try:
                yield
            finally:
                self.bus = None
                tg.cancel_scope.cancel()

    # -- guards and inputs -------------------------------------------------------------

    def guarded(self, endpoint: Endpoint) -> Endpoint:
        async def check(request: Request) -> Response:
            if not self.auth.allows(request):
                raise ApiError(
                    401,
                    "not logged in: POST /api/login with the console's token "
                    "(or send Authorization: Bearer TOKEN)",
                )
            return await endpoint(request)

        return check

    def _bus(self) -> Bus:
        if self.bus is None:
            raise ApiError(503, "the console is not connected to the broker")
        return self.bus

    def _subscription(self, topic: str, group: str | None) -> tuple[str, str]:
        """A subscription with dead letters that a running service has; else 400 or 404."""
        try:
            names.check_topic(topic)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        if not group:
            raise ApiError(400, 'name the consumer group: ?group=NAME (or "group" in the body)')
        try:
            names.check_group(group)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        known = [(t, g) for t, g, responder in self.watcher.subscriptions() if not responder]
        if not any(t == topic for t, _ in known):
            topics = sorted({t for t, _ in known})
            raise ApiError(
                404,
                f"unknown topic {topic!r}: no service heard on this broker subscribes to it "
                f"(topics with dead letters: {', '.join(topics) or 'none yet'}); "
                f"for a service that no longer runs, use `bus dlq list {topic} --group GROUP`",
            )
        if (topic, group) not in known:
            groups = sorted(g for t, g in known if t == topic)
            raise ApiError(
                404,
                f"unknown group {group!r} on {topic!r}: the groups subscribed to it are "
                f"{', '.join(groups)}",
            )
        return topic, group

    async def _body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(400, "send a JSON body with Content-Type: application/json")
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    # -- routes ------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return FileResponse(_STATIC / "index.html", headers=_PAGE_HEADERS)

    async def login(self, request: Request) -> Response:
        body = await self._body(request)
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise ApiError(400, 'send {"token": "..."}: the console\'s token')
        if not self.auth.matches(token):
            await anyio.sleep(WRONG_TOKEN_DELAY)  # guessing costs time
            raise ApiError(
                401, "wrong token: use the one in BUS_CONSOLE_TOKEN where the console runs"
            )
        response = _json({"ok": True})
        self.auth.open_session(response)
        return response

    async def logout(self, request: Request) -> Response:
        response = _json({"ok": True})
        self.auth.close_session(response)
        return response

    def _overview(self) -> dict[str, Any]:
        return {"broker": redact(self.url), "instances": self.watcher.instances()}

    async def services_route(self, request: Request) -> Response:
        return _json(self._overview())

    async def flow(self, request: Request) -> Response:
        return _json(self.watcher.flow_snapshot())

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            while True:
                update = {"services": self._overview(), "flow": self.watcher.flow_snapshot()}
                yield b"event: update\ndata: " + msgspec.json.encode(update) + b"\n\n"
                await anyio.sleep(self.update_every)

        headers = {**_NO_STORE, "x-accel-buffering": "no"}
        return StreamingResponse(stream(), headers=headers, media_type="text/event-stream")

    async def dead_letter_counts(self, request: Request) -> Response:
        b = self._bus()
        out = []
        for topic, group, responder in self.watcher.subscriptions():
            if responder:
                continue
            count = 0
            try:
                async with contextlib.aclosing(b.dead_letters(topic, group=group)) as letters:
                    async for _ in letters:
                        count += 1
                        if count >= COUNT_CAP:
                            break
            except BusError as exc:
                raise ApiError(503, f"the broker failed browsing {topic!r}: {exc}") from None
            out.append(
                {"topic": topic, "group": group, "count": count, "capped": count >= COUNT_CAP}
            )
        return _json({"subscriptions": out})

    async def dead_letters(self, request: Request) -> Response:
        topic, group = self._subscription(
            request.path_params["topic"], request.query_params.get("group")
        )
        raw = request.query_params.get("limit", str(LIST_LIMIT))
        if not raw.isdigit() or not 1 <= int(raw) <= COUNT_CAP:
            raise ApiError(400, f"limit must be a whole number from 1 to {COUNT_CAP}, not {raw!r}")
        limit = int(raw)
        letters: list[dict[str, Any]] = []
        more = False
        try:
            async with contextlib.aclosing(self._bus().dead_letters(topic, group=group)) as found:
                async for letter in found:
                    if len(letters) == limit:
                        more = True
                        break
                    letters.append(_letter(letter))
        except BusError as exc:
            raise ApiError(503, f"the broker failed browsing {topic!r}: {exc}") from None
        return _json({"topic": topic, "group": group, "letters": letters, "more": more})

    async def replay(self, request: Request) -> Response:
        body = await self._body(request)
        group = body.get("group")
        if group is not None and not isinstance(group, str):
            raise ApiError(400, '"group" must be a string')
        message_id = body.get("message_id")
        if message_id is not None and (not isinstance(message_id, str) or not message_id):
            raise ApiError(400, '"message_id" must be the id of a dead letter (a string)')
        topic, group = self._subscription(request.path_params["topic"], group)
        ids = None if message_id is None else [message_id]
        try:
            moved = await self._bus().replay(topic, group=group, message_ids=ids)
        except BusError as exc:
            raise ApiError(503, f"the broker failed replaying {topic!r}: {exc}") from None
        if ids and not moved:
            raise ApiError(
                404,
                f"no dead letter with id {message_id!r} in group {group!r} on {topic!r}: "
                "it was replayed meanwhile, or never parked there; refresh the list",
            )
        return _json({"topic": topic, "group": group, "replayed": moved})

    async def asyncapi(self, request: Request) -> Response:
        fmt = request.query_params.get("format", "json")
        if fmt not in ("json", "yaml"):
            raise ApiError(400, f"format must be json or yaml, not {fmt!r}")
        doc = contracts(self.services, self.watcher.instances(), self.url)
        media = "application/json" if fmt == "json" else "application/yaml"
        return Response(render(doc, fmt), 200, _NO_STORE, media)

    async def not_found(self, request: Request) -> Response:
        raise ApiError(404, f"no such route: {request.method} {request.url.path}")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json({"error": exc.text}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _json({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)


def create_app(console: Console) -> Starlette:
    """The ASGI app serving ``console``."""
    c, g = console, console.guarded
    routes = [
        Route("/", c.index),
        Mount("/static", StaticFiles(directory=_STATIC), name="static"),
        Route("/api/login", c.login, methods=["POST"]),
        Route("/api/logout", c.logout, methods=["POST"]),
        Route("/api/services", g(c.services_route)),
        Route("/api/flow", g(c.flow)),
        Route("/api/events", g(c.events)),
        Route("/api/dead-letters", g(c.dead_letter_counts)),
        Route("/api/dead-letters/{topic}", g(c.dead_letters)),
        Route("/api/dead-letters/{topic}/replay", g(c.replay), methods=["POST"]),
        Route("/api/asyncapi", g(c.asyncapi)),
        Route("/api/{rest:path}", c.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=console.lifespan,
    )
    app.state.console = console
    return app
