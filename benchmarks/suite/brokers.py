"""The brokers a run talks to: the embedded one, RabbitMQ on loopback (the shared one,
``BENCH_AMQP_URL``), and a tansu Kafka-protocol broker this run starts on a free loopback
port and stops by its own pid (brokers/tansu.py, the tests' launcher too).

Every name the run creates on RabbitMQ starts with the run's exchange name, and the run
deletes exactly those at the end (``cleanup``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass, field

from brokers import HOST, port_open, tansu

RABBIT_URL = os.environ.get("BENCH_AMQP_URL", f"amqp://guest:guest@{HOST}:5672/")
KAFKA_OPTIONS = {
    "fetch_max_wait_ms": "5",
    "session_timeout_ms": "1500",
    "commit_interval_ms": "50",
    "read_ahead": "500",
    "partitions": "4",
}


class Tansu(tansu.Tansu):
    """The run's own tansu (brokers/tansu.py), ready once constructed; RuntimeError if it
    cannot start."""

    def __init__(self) -> None:
        super().__init__(log_prefix="bench-tansu-")
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise


@dataclass
class Brokers:
    """What the run's adapters connect to. ``prefix`` starts every name the run makes."""

    prefix: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    tansu: Tansu | None = None

    def start(self, adapters: list[str]) -> None:
        if "rabbitmq" in adapters and not port_open(5672):
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
