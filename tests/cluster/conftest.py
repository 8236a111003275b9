"""Brokers these tests own: one RabbitMQ node (restarted under a running bus) and a
three-node cluster (a node killed under a running bus), each started once per session.

Both come from brokers/ and are ours alone: the shared broker on 5672 is never touched.
A test that kills or stops a node need not start it again: the function-scoped fixtures
bring every node back (and the cluster whole) before the next test uses it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from brokers import BrokerError
from brokers.rabbitmq_cluster import RabbitCluster
from brokers.rabbitmq_node import RabbitNode

log = logging.getLogger("tests.cluster")


@pytest.fixture(scope="package")  # stopped once tests/cluster is done
def own_rabbit_node() -> Iterator[RabbitNode]:
    """One RabbitMQ node of this run's own (~10 s to start)."""
    node = RabbitNode.temporary(f"bus-{time.strftime('%H%M%S')}-solo")
    try:
        node.start()
    except BrokerError as exc:
        node.close()
        pytest.fail(f"cannot start a RabbitMQ node of our own: {exc}")
    yield node
    node.close()


@pytest.fixture(scope="package")  # stopped once tests/cluster is done
def own_rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes of this run's own, clustered (~25 s to start here)."""
    cluster = RabbitCluster.temporary()
    started = time.monotonic()
    try:
        cluster.start()
    except BrokerError as exc:
        cluster.close()
        pytest.fail(f"cannot start a RabbitMQ cluster of our own: {exc}")
    log.warning("cluster of %d up in %.1fs", len(cluster.nodes), time.monotonic() - started)
    yield cluster
    cluster.close()


@pytest.fixture
def rabbit_node(own_rabbit_node: RabbitNode) -> RabbitNode:
    """The node, running (started again if a test before left it down)."""
    if not own_rabbit_node.running:
        own_rabbit_node.start()
    return own_rabbit_node


@pytest.fixture
def rabbit_cluster(own_rabbit_cluster: RabbitCluster) -> RabbitCluster:
    """The cluster with every node running and a member (any a test left down is
    started again and rejoins)."""
    down = [node for node in own_rabbit_cluster.nodes if not node.running]
    for node in down:
        node.start()
    if down:
        own_rabbit_cluster.wait_running(len(own_rabbit_cluster.nodes))
    return own_rabbit_cluster
