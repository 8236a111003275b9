"""Serving the console with uvicorn inside a running event loop, on loopback by default."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import AsyncIterator

import anyio
import uvicorn
from starlette.applications import Starlette

from bus.errors import BusError, ConfigError

log = logging.getLogger("bus.console")
START_DEADLINE = 30.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port (0: any free)"
        ) from None
    return sock


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
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="none",
        timeout_graceful_shutdown=2,  # event streams stay open until told
    )
    server = uvicorn.Server(config)
    with sock:
        async with anyio.create_task_group() as tg:

            async def serve() -> None:
                try:
                    await server.serve([sock])
                except SystemExit:  # uvicorn's way to say the app's start-up failed
                    server.should_exit = True
                    return
                if server.started:  # it stopped by itself (a signal): end the block
                    tg.cancel_scope.cancel()

            tg.start_soon(serve)
            with anyio.move_on_after(START_DEADLINE):
                # uvicorn offers flags, not events, for these
                while not server.started and not server.should_exit:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            if server.started:
                try:
                    shown = f"[{host}]" if ":" in host else host
                    yield f"http://{shown}:{bound}"
                finally:
                    server.should_exit = True
            else:
                server.should_exit = True
    if not server.started:
        raise BusError("the console failed to start (is the broker reachable?); see its log")
