"""Brokers a test or benchmark run owns: it starts them, and may stop, kill and restart
them, ending exactly the processes it started (by pid, never by name).

- ``brokers.rabbitmq_node.RabbitNode``: one RabbitMQ node of our own, from the installed
  server, with its own node name, ports, folders and config (never /etc/rabbitmq's).
- ``brokers.rabbitmq_cluster.RabbitCluster``: three (or more) such nodes joined.

The shared broker on 127.0.0.1:5672 is never touched from here. pytest fixtures live in
tests/brokers/ and the cluster tests' conftest; they import from this package.
"""

from __future__ import annotations

import random
import socket

HOST = "127.0.0.1"

# Ports handed out are taken below the kernel's ephemeral range (32768-60999 on Linux),
# so a client's outgoing connection never lands on one between two starts of a broker;
# and never the shared broker's 5672/25672 or rabbitmqctl's own 35672-35682.
PORT_RANGE = (20_000, 32_000)
_RESERVED = frozenset({5672, 25672})
_handed_out: set[int] = set()


class BrokerError(RuntimeError):
    """A broker of our own could not be started, driven or stopped: the message says why
    (a missing binary included: that fails a test, it never skips one)."""


def free_port() -> int:
    """A loopback TCP port nothing listens on now and this process never handed out
    before, from PORT_RANGE (kept for a broker's life: it can be restarted on it)."""
    low, high = PORT_RANGE
    for _ in range(500):
        port = random.randrange(low, high)
        if port in _handed_out or port in _RESERVED:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise BrokerError(f"no free port on {HOST} in {low}-{high}")


def port_open(port: int, host: str = HOST) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False
