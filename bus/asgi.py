"""Serving an ASGI app with uvicorn inside a running event loop, for the length of an
``async with``: the console (``bus console``) and the example shop's HTTP gateway. Needs
uvicorn (the ``console`` or ``gateway`` extra)."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import anyio
import uvicorn

from bus.errors import BusError, ConfigError

START_DEADLINE = 30.0


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (0: a free port); ConfigError if it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it every response waits ~40 ms on Nagle and a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; pick another port (0: any free)"
        ) from None
    return sock


@contextlib.asynccontextmanager
async def serving(
    app: Any, host: str = "127.0.0.1", port: int = 0, *, name: str = "the app", **options: Any
) -> AsyncIterator[str]:
    """Serve ``app`` while the block runs; yield its base URL. Its lifespan (start-up,
    shut-down) runs around the block; BusError naming ``name`` if it fails to start.
    ``options`` go to ``uvicorn.Config``."""
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", loop="none", **options
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
    if not server.started:  # raised here, outside the task group, so not in a group
        raise BusError(f"{name} failed to start (is the broker reachable?); see its log")
