"""Serving the gateway with uvicorn inside a running event loop, on a port of the
caller's choice or a free one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bus import asgi
from services.config import Config
from services.gateway.app import create_app


@contextlib.asynccontextmanager
async def serving(
    cfg: Config | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the gateway for ``cfg`` while the block runs; yield its base URL.

    ``port=0`` takes a free one. The app's bus opens before the URL is yielded and
    closes gracefully after the block; BusError if it cannot start."""
    async with asgi.serving(create_app(cfg), host, port, name="the gateway") as url:
        yield url
