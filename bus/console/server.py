"""Serving the console with uvicorn inside a running event loop, on loopback by default."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from bus import asgi

log = logging.getLogger("bus.console")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@contextlib.asynccontextmanager
async def serving(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` while the block runs; yield its base URL (``port=0``: a free one)."""
    if not is_loopback(host):
        log.warning("the console listens on %s, beyond this machine: use TLS in front", host)
    async with asgi.serving(
        app, host, port, name="the console", timeout_graceful_shutdown=2
    ) as url:  # graceful shut-down bounded: event streams stay open until told
        yield url
