"""A TLS terminator on loopback: accepts TLS on ``HOST:port`` and forwards the decrypted
bytes to a plain broker port on ``HOST:target``, on an event loop of its own thread.

It stands in for a broker's own TLS listener where the broker cannot take one (tansu 0.6,
see brokers/tansu.py): the client's side of TLS is the real thing, the broker behind it
is unchanged. ``client_ca``: client certificates are then required and checked (mutual
TLS). A handshake that fails (untrusted certificate, a client speaking plain Kafka or
AMQP to the TLS port) closes that connection at once.
The terminator outlives the broker behind it: while the broker is down a connection is
accepted, then closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path

HOST = "127.0.0.1"
HANDSHAKE_TIMEOUT = 5.0
CHUNK = 65536


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        context.load_verify_locations(str(client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class TlsTerminator:
    def __init__(
        self, port: int, target: int, cert: Path, key: Path, client_ca: Path | None = None
    ) -> None:
        self.port, self.target = port, target
        self._context = server_context(cert, key, client_ca)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.accepted = 0
        """Connections whose handshake succeeded."""
        self.errors: list[str] = []
        """What the loop reported besides failed handshakes (those are OSErrors, which
        asyncio drops quietly)."""

    @property
    def serving(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        """Listen (on the thread's loop); return once listening."""
        if self._server is not None:
            return
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(self._loop_error)
        started = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(self._listen())
            except BaseException as exc:
                failed.append(exc)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"tls-{self.port}", daemon=True)
        self._thread.start()
        started.wait()
        if failed:
            self._loop = self._thread = None
            raise RuntimeError(f"TLS terminator cannot listen on {HOST}:{self.port}: {failed[0]}")

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None
        self._server = None

    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(
            self._serve,
            HOST,
            self.port,
            ssl=self._context,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            reuse_address=True,
        )

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        self.errors.append(str(exc) if exc is not None else str(context.get("message")))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            try:
                back_reader, back_writer = await asyncio.open_connection(HOST, self.target)
            except OSError:
                return  # the broker is down: close the client's connection
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_pipe(reader, back_writer))
                    tg.create_task(_pipe(back_reader, writer))
            except* (OSError, ConnectionError, ssl.SSLError):
                pass
            finally:
                back_writer.close()
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then close the writing side (both ways end together)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
