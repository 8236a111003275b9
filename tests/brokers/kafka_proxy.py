"""A loopback TCP proxy in front of a real Kafka-protocol broker, to inject faults.

The broker advertises the proxy's port (``Tansu(advertised_port=...)``), so every client
connection, bootstrap and per-node alike, goes through it. The proxy forwards bytes
unchanged; it only injects the fault it is asked for:

- ``cut()`` drops every connection open now; ``down()`` / ``up()`` also close new ones
  at once while the broker is "gone";
- ``black_hole_produce=True``: a connection that sends a Produce request (Kafka request
  frames are a 4-byte big-endian size, then a body starting with int16 api_key; Produce
  is 0) has that request and all its further traffic swallowed, unanswered, so the
  client's request times out. Other requests (metadata, CreateTopics, group and fetch
  traffic, InitProducerId) are forwarded, so consumers and admin keep working; a
  producer's connection is black-holed from its first Produce on.

It runs on the caller's event loop (``serve(tg)``, or ``await tg.start(proxy.run)``) or
on a thread of its own (``in_thread(proxy)``), for session fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anyio
from anyio.abc import SocketStream, TaskGroup, TaskStatus
from anyio.from_thread import start_blocking_portal

HOST = "127.0.0.1"
PRODUCE = 0  # the Produce request's api_key
_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class Proxy:
    """Forwards ``HOST:port`` to the broker on ``HOST:target``."""

    def __init__(self, port: int, target: int, *, black_hole_produce: bool = False) -> None:
        self.port, self.target = port, target
        self.black_hole_produce = black_hole_produce
        self.scopes: set[anyio.CancelScope] = set()
        self.cuts = 0
        self.dropped = 0
        self.swallowed = 0
        """Connections black-holed at a Produce request."""
        self.refusing = False

    async def serve(self, tg: TaskGroup) -> None:
        """Listen, and serve in ``tg`` until it is cancelled."""
        listener = await anyio.create_tcp_listener(local_host=HOST, local_port=self.port)
        tg.start_soon(listener.serve, self._pipe)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Listen (then report started) and serve until cancelled."""
        async with await anyio.create_tcp_listener(
            local_host=HOST, local_port=self.port
        ) as listener:
            task_status.started()
            await listener.serve(self._pipe)

    def down(self) -> None:
        """The broker is unreachable: connections dropped, new ones closed at once."""
        self.refusing = True
        self.cut()

    def up(self) -> None:
        self.refusing = False

    def cut(self) -> None:
        self.cuts += 1
        self.dropped += len(self.scopes)
        for scope in list(self.scopes):
            scope.cancel()

    async def _pipe(self, client: SocketStream) -> None:
        if self.refusing:
            await client.aclose()
            return
        with anyio.CancelScope() as scope:
            self.scopes.add(scope)
            try:
                async with (
                    client,
                    await anyio.connect_tcp(HOST, self.target) as upstream,
                    anyio.create_task_group() as tg,
                ):
                    if self.black_hole_produce:
                        tg.start_soon(self._requests, client, upstream)
                    else:
                        tg.start_soon(_copy, client, upstream)
                    tg.start_soon(_copy, upstream, client)
            except OSError:
                pass
            finally:
                self.scopes.discard(scope)

    async def _requests(self, client: SocketStream, upstream: SocketStream) -> None:
        """Forward whole request frames until a Produce; from then on read and drop
        everything the client sends, answering nothing, until it closes."""
        pending = bytearray()
        try:
            async for chunk in client:
                pending += chunk
                while len(pending) >= 4:
                    end = 4 + int.from_bytes(pending[:4], "big")
                    if len(pending) < end:
                        break
                    if end >= 6 and int.from_bytes(pending[4:6], "big", signed=True) == PRODUCE:
                        self.swallowed += 1
                        async for _ in client:
                            pass
                        return
                    await upstream.send(bytes(pending[:end]))
                    del pending[:end]
        except _GONE:
            pass
        finally:
            await upstream.aclose()


async def _copy(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except _GONE:
        pass
    finally:
        await sink.aclose()


@contextlib.contextmanager
def in_thread(proxy: Proxy) -> Iterator[Proxy]:
    """Run ``proxy`` on an event loop in a thread of its own, listening on return;
    stopped (its connections closed) on exit."""
    with start_blocking_portal() as portal:
        portal.start_task(proxy.run)
        try:
            yield proxy
        finally:
            portal.call(portal.stop, True)
