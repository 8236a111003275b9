"""A server span per HTTP request, through the OpenTelemetry API alone, continuing a
caller's W3C ``traceparent``. The bus requests a handler makes become its children, so
one order's trace runs from the HTTP request through every service it touches."""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate, trace

Scope = dict[str, Any]


class TracingMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.tracer = trace.get_tracer("services.gateway")

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        attrs = {"http.request.method": method, "url.path": scope["path"]}
        with self.tracer.start_as_current_span(
            f"{method} {scope['path']}",
            context=propagate.extract(carrier),
            kind=trace.SpanKind.SERVER,
            attributes=attrs,
        ) as span:

            async def send_traced(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(trace.StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, send_traced)
            route = scope.get("route")
            if route is not None and hasattr(route, "path"):
                span.update_name(f"{method} {route.path}")
                span.set_attribute("http.route", route.path)
