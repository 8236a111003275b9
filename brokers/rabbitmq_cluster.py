"""A RabbitMQ cluster of our own: three (or more) RabbitNodes on loopback, joined.

    cluster = RabbitCluster.temporary(tag="abc")
    cluster.start()          # the nodes boot side by side; the others join the first
    url = cluster.url(queue_type="quorum")   # amqp://guest:guest@h:p1,h:p2,h:p3/?...
    cluster.nodes[0].kill()  # kill -9 one node; quorum queues go on with 2 of 3
    cluster.nodes[0].start() # it comes back and rejoins by itself
    cluster.wait_running(3)
    cluster.close()

Every node shares the cluster's cookie (``<root>/.erlang.cookie``) and has its own folder
``<root>/node<n>``. The first node boots alone; then the others boot side by side, each
naming the first as its peer (classic-config peer discovery), so on its first boot it
joins it, with no second boot of its own (``stop_app / join_cluster / start_app`` cost
~6 s a node here). A node that still comes up alone is joined that way. (Joining a first
node still booting fails: its tables are not yet upgraded by its feature flags.) On a
later start a node rejoins the cluster it belongs to.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brokers import BrokerError
from brokers.rabbitmq_node import START_TIMEOUT, RabbitNode, url_of, write_cookie

log = logging.getLogger("brokers.rabbitmq")


class RabbitCluster:
    """Nodes ``bus-<tag>-1`` ... ``bus-<tag>-<size>`` joined into one cluster."""

    def __init__(
        self,
        root: Path | str,
        *,
        size: int = 3,
        tag: str | None = None,
        config_lines: Sequence[str] = (),
        advanced_config: str | None = None,
        owns_root: bool = False,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self.tag = tag or uuid.uuid4().hex[:6]
        self.root = Path(root)
        self._owns_root = owns_root
        seed = f"bus-{self.tag}-1@localhost"
        peers = [
            "cluster_formation.peer_discovery_backend = classic_config",
            f"cluster_formation.classic_config.nodes.1 = {seed}",
            # Should the first node not answer at once: 0.5 s x 240.
            "cluster_formation.discovery_retry_limit = 240",
            "cluster_formation.discovery_retry_interval = 500",
        ]
        self.nodes = [
            RabbitNode(
                f"bus-{self.tag}-{n}",
                self.root / f"node{n}",
                home=self.root,
                config_lines=[*(peers if n > 1 else []), *config_lines],
                advanced_config=advanced_config,
            )
            for n in range(1, size + 1)
        ]

    @classmethod
    def temporary(cls, **kwargs: Any) -> RabbitCluster:
        """A cluster in a fresh temporary folder, removed by ``close``."""
        tag = kwargs.pop("tag", None) or uuid.uuid4().hex[:6]
        root = Path(tempfile.mkdtemp(prefix=f"bus-rabbit-{tag}-"))
        return cls(root, tag=tag, owns_root=True, **kwargs)

    def __repr__(self) -> str:
        return f"RabbitCluster({', '.join(repr(n) for n in self.nodes)})"

    @property
    def addresses(self) -> list[str]:
        """``host:port`` of every node, in order."""
        return [node.address for node in self.nodes]

    def url(
        self, user: str = "guest", password: str = "guest", *, vhost: str = "/", **options: str
    ) -> str:
        """A URL naming every node (``amqp://u:p@h:p1,h:p2,h:p3/vhost?options``)."""
        return url_of(self.addresses, user, password, vhost=vhost, **options)

    def node_at(self, address: str) -> RabbitNode:
        """The node listening at ``host:port``."""
        for node in self.nodes:
            if node.address == address:
                return node
        raise KeyError(address)

    # -- life --------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Boot the first node, then the others side by side, joining the first; returns
        once ``cluster_status`` shows them all running. On failure, kills what it started."""
        started = time.monotonic()
        write_cookie(self.root)
        seed, *others = self.nodes
        try:
            seed.start(timeout)
            if others:
                with concurrent.futures.ThreadPoolExecutor(len(others)) as pool:
                    for future in [pool.submit(node.start, timeout) for node in others]:
                        future.result()
            booted = time.monotonic()
            members = set(seed.cluster_status().get("running_nodes", []))
            alone = [node for node in others if node.nodename not in members]
            for node in alone:
                log.warning("%s came up alone; joining it to %s", node, seed)
                self.join(node, seed)
            if alone:
                self.wait_running(len(self.nodes), timeout)
        except BaseException:
            self.kill()
            raise
        log.info(
            "cluster %s up in %.1fs (booted in %.1fs)",
            [n.nodename for n in self.nodes],
            time.monotonic() - started,
            booted - started,
        )

    @staticmethod
    def join(node: RabbitNode, seed: RabbitNode) -> None:
        """Make a running ``node`` (fresh, or reset) a member of ``seed``'s cluster."""
        node.ctl("stop_app")
        node.ctl("join_cluster", seed.nodename)
        node.ctl("start_app")

    def running_nodes(self) -> list[str]:
        """The running members, as the first running node sees them."""
        for node in self.nodes:
            if node.running:
                with contextlib.suppress(BrokerError):
                    return sorted(node.cluster_status().get("running_nodes", []))
        return []

    def wait_running(self, count: int, timeout: float = 60.0) -> list[str]:
        """Until ``count`` members are running (all of them, say, after one rejoined)."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.running_nodes()
            if len(running) >= count:
                return running
            if time.monotonic() > deadline:
                raise BrokerError(f"{len(running)} of {count} nodes running: {running}")
            time.sleep(0.5)

    def stranded(self, vhost: str = "/") -> dict[str, int]:
        """Quorum queues holding messages that are neither ready nor unacked, by name:
        dead letters that RabbitMQ 3.10.8's at-least-once dead-lettering stranded when
        they expired while their queue changed leader (rabbitmq-server#7677)."""
        for node in self.nodes:
            if not node.running:
                continue
            listed = node.ctl(
                "list_queues", "-q", "--no-table-headers", "-p", vhost,
                "name", "type", "messages", "messages_ready", "messages_unacknowledged",
            )  # fmt: skip
            held: dict[str, int] = {}
            for line in listed.splitlines():
                name, kind, total, ready, unacked = line.rsplit("\t", 4)
                extra = int(total) - int(ready) - int(unacked)
                if kind == "quorum" and extra > 0:
                    held[name] = extra
            return held
        raise BrokerError("no node of the cluster is running")

    def queues(self, containing: str = "", vhost: str = "/") -> list[str]:
        """``list_queues`` lines (name, type, messages, ready, unacked, consumers, leader,
        online members) of queues whose name holds ``containing``, from a running node."""
        for node in self.nodes:
            if node.running:
                listed = node.ctl(
                    "list_queues", "-q", "--no-table-headers", "-p", vhost, "name", "type",
                    "messages", "messages_ready", "messages_unacknowledged", "consumers",
                    "leader", "online",
                )  # fmt: skip
                return [line for line in listed.splitlines() if containing in line]
        raise BrokerError("no node of the cluster is running")

    def restart_dead_lettering(self, containing: str = ":delay:") -> list[str]:
        """The operator's way out of ``stranded``: restart, node by node, the members of
        every quorum queue whose name holds ``containing``. The leader's restart elects
        another, whose dead-lettering worker sends what was stranded. Returns the output
        of each node."""
        expression = (
            "[{N, ra:stop_server(quorum_queues, {N, node()}), "
            "ra:restart_server(quorum_queues, {N, node()})} "
            "|| {N, _} <- ra_directory:list_registered(quorum_queues), "
            f"string:find(atom_to_list(N), {json.dumps(containing)}) =/= nomatch]."
        )
        return [f"{node}: {node.eval(expression)}" for node in self.nodes if node.running]

    def stop(self) -> None:
        """Stop every node gracefully, the last one first."""
        for node in reversed(self.nodes):
            node.stop()

    def kill(self) -> None:
        """kill -9 every node of ours still running."""
        for node in self.nodes:
            node.kill()

    def close(self) -> None:
        """Kill every node (their data is thrown away) and remove the cluster's folder
        if it is a temporary one."""
        self.kill()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
