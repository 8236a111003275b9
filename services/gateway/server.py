"""Serving the gateway with uvicorn inside a running event loop, on a port of the
caller's choice or a free one."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import uvicorn

from services.config import Config
from services.gateway.app import create_app

START_DEADLINE = 30.0


@contextlib.asynccontextmanager
async def serving(
    cfg: Config | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the gateway for ``cfg`` while the block runs; yield its base URL.

    ``port=0`` takes a free one. The app's bus opens before the URL is yielded and
    closes gracefully after the block."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every response waits ~40 ms on Nagle and a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(cfg), log_level="warning", access_log=False, lifespan="on", loop="none"
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
                    yield f"http://{host}:{bound}"
                finally:
                    server.should_exit = True
            else:
                server.should_exit = True
    if not server.started:  # raised here, outside the task group, so not in a group
        raise RuntimeError("the gateway failed to start (is the broker reachable?); see its log")
