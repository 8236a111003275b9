"""One RabbitMQ node of our own, started from the installed server.

Everything it has is its own: node name ``<name>@localhost``, AMQP port, distribution
port (``RABBITMQ_DIST_PORT``), config file, env file, enabled-plugins file (no plugins,
so it starts in seconds), advanced config, mnesia and log folders, all under one folder.
It never reads /etc/rabbitmq (the shared broker's pins port 5672). The Erlang cookie is
the ``.erlang.cookie`` in the ``home`` folder, given to the node and to ``rabbitmqctl``
as ``HOME``: nodes sharing a home can cluster. Distribution and epmd stay on loopback.

    node = RabbitNode.temporary("bus-demo-1")
    node.start()                  # returns once `rabbitmqctl await_startup` does
    url = node.url(exchange="x")  # amqp://guest:guest@127.0.0.1:<port>/?exchange=x
    node.restart()                # graceful stop, then start with the same data
    node.kill()                   # kill -9 of its beam.smp, by pid
    node.close()                  # stop it if running and remove its folder

TLS (or any other listener) is added by config lines and the ports they use, e.g.
``RabbitNode(..., config_lines=["listeners.ssl.1 = 127.0.0.1:%d" % p, "ssl_options..."],
extra_ports={"amqps": p})``, and ``plain=False`` leaves no plain AMQP listener.

Debian's /usr/sbin/rabbitmq* are wrappers that switch to the ``rabbitmq`` user (dropping
our HOME); the real scripts are looked up first in /usr/lib/rabbitmq/bin.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from brokers import HOST, BrokerError, free_port, port_open

log = logging.getLogger("brokers.rabbitmq")

SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/lib/rabbitmq/sbin")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
CTL_TIMEOUT = 90.0
_STARTED = "Server startup complete"
_live: dict[int, RabbitNode] = {}  # id -> node with a process of ours, for atexit


def tool(name: str) -> str:
    """The path of a RabbitMQ script (``rabbitmq-server``, ``rabbitmqctl``...);
    BrokerError when it is not installed."""
    search = os.pathsep.join([*SCRIPT_DIRS, os.environ.get("PATH", "")])
    found = shutil.which(name, path=search)
    if found is None:
        raise BrokerError(f"{name} is not installed (looked in {search}): install rabbitmq-server")
    if Path(found).resolve().name == "rabbitmq-script-wrapper":
        raise BrokerError(
            f"{found} is Debian's wrapper (it runs as the rabbitmq user with its own HOME); "
            f"the real {name} was not found in {', '.join(SCRIPT_DIRS)}"
        )
    return found


def write_cookie(home: Path, cookie: str | None = None) -> str:
    """Write ``home/.erlang.cookie`` (mode 0400) unless it exists; returns the cookie."""
    path = home / ".erlang.cookie"
    if path.exists():
        return path.read_text()
    value = cookie or secrets.token_hex(20).upper()
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(value)
    path.chmod(0o400)
    return value


class RabbitNode:
    """One RabbitMQ node whose process this run owns."""

    def __init__(
        self,
        name: str,
        root: Path | str,
        *,
        home: Path | str | None = None,
        amqp_port: int | None = None,
        dist_port: int | None = None,
        plain: bool = True,
        config_lines: Sequence[str] = (),
        extra_ports: Mapping[str, int] | None = None,
        advanced_config: str | None = None,
        owns_root: bool = False,
    ) -> None:
        """``name`` is the short node name (``bus-x-1``); ``root`` the node's folder;
        ``home`` the folder whose ``.erlang.cookie`` it uses (default ``root``: share
        one between nodes that cluster). Ports default to free ones, kept across restarts.
        ``config_lines`` go into rabbitmq.conf after ours (a TLS listener, say) and
        ``extra_ports`` names the ports they use; ``plain=False`` opens no plain AMQP
        listener. ``advanced_config`` is the text of an advanced.config (Erlang terms)."""
        self.name = name
        self.nodename = f"{name}@localhost"
        self.root = Path(root)
        self.home = Path(home) if home is not None else self.root
        self.amqp_port = amqp_port or free_port()
        self.dist_port = dist_port or free_port()
        self.plain = plain
        self.config_lines = list(config_lines)
        self.extra_ports = dict(extra_ports or {})
        self.advanced_config = advanced_config
        self._owns_root = owns_root
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None

    @classmethod
    def temporary(cls, name: str, **kwargs: Any) -> RabbitNode:
        """A node in a fresh temporary folder, removed by ``close``."""
        root = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        return cls(name, root, owns_root=True, **kwargs)

    def __repr__(self) -> str:
        state = f"pid {self._pid}" if self.running else "stopped"
        return f"RabbitNode({self.nodename}, amqp {self.amqp_port}, {state})"

    # -- where things are --------------------------------------------------------------

    @property
    def address(self) -> str:
        """``host:port`` of the plain AMQP listener (how a bus URL names this node)."""
        return f"{HOST}:{self.amqp_port}"

    @property
    def log_file(self) -> Path:
        return self.root / "log" / f"{self.nodename}.log"

    @property
    def pid(self) -> int | None:
        """The beam.smp pid while running."""
        return self._pid if self.running else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(
        self,
        user: str = "guest",
        password: str = "guest",
        *,
        vhost: str = "/",
        scheme: str = "amqp",
        port: int | None = None,
        **options: str,
    ) -> str:
        """An ``amqp://`` URL of this node with ``options`` as its query."""
        return url_of(
            [f"{HOST}:{port or self.amqp_port}"],
            user,
            password,
            vhost=vhost,
            scheme=scheme,
            **options,
        )

    def env(self) -> dict[str, str]:
        """The environment of the node and of ``rabbitmqctl`` driving it: nothing of the
        caller's RABBITMQ_*/ERL_* settings, everything pointing into ``root``."""
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RABBITMQ_", "ERL_")) and k not in ("HOME", "NODENAME")
        }
        root = self.root
        return {
            **base,
            "HOME": str(self.home),  # .erlang.cookie
            "RABBITMQ_NODENAME": self.nodename,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq.conf"),
            "RABBITMQ_CONFIG_FILES": str(root / "conf.d"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(root / "log"),
            "RABBITMQ_PID_FILE": str(root / "node.pid"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_CRASH_DUMP_SECONDS": "0",
        }

    # -- life --------------------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the node (with the data it had, if it ran before) and return once it is
        up (its log says the boot is complete, else ``rabbitmqctl await_startup`` says
        so); BrokerError with its log's end if it exits or is not up in ``timeout`` s."""
        if self.running:
            raise BrokerError(f"{self.nodename} is already running")
        server = tool("rabbitmq-server")
        self._write_files()
        log_from = self.log_file.stat().st_size if self.log_file.exists() else 0
        deadline = time.monotonic() + timeout
        out = (self.root / "server.out").open("ab")
        started = time.monotonic()
        try:
            self._proc = subprocess.Popen(
                [server],
                env=self.env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to the test run does not reach it
            )
        finally:
            out.close()
        _live[id(self)] = self
        try:
            while not (said := self._said_started(log_from)):
                if self._no_log_but_listening(started):
                    break
                if self._proc.poll() is not None:
                    raise BrokerError(
                        f"{self.nodename} exited with {self._proc.returncode} while "
                        f"starting:\n{self.tail()}"
                    )
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"{self.nodename} did not start in {timeout:.0f}s:\n{self.tail()}"
                    )
                time.sleep(0.1)
            if not said:  # no log file to read (config lines turned it off): ask the node
                self.ctl("await_startup", timeout=max(5.0, deadline - time.monotonic()))
            self._pid = self._read_pid()
        except BaseException:
            self.kill()
            raise
        log.info(
            "started %s (AMQP %s, pid %s) in %.1fs",
            self.nodename,
            self.amqp_port,
            self._pid,
            time.monotonic() - started,
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop gracefully (SIGTERM to its beam.smp: RabbitMQ shuts down cleanly on it),
        killing it if it has not ended in ``timeout`` seconds. Nothing if not running."""
        if not self.running:
            self._forget()
            return
        started = time.monotonic()
        self._signal(signal.SIGTERM)
        assert self._proc is not None
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0fs; killing it", self.nodename, timeout)
            self.kill()
            return
        self._forget()
        log.info("stopped %s in %.1fs", self.nodename, time.monotonic() - started)

    def kill(self) -> None:
        """``kill -9`` its beam.smp (and the script that started it) and wait for it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            try:  # the rabbitmq-server script reaps its beam.smp, then ends
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        self._wait_gone(self._pid)
        log.info("killed %s (pid %s)", self.nodename, self._pid)
        self._forget()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Stop gracefully and start again, same name, ports and data."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Kill it if running and remove its folder if it is a temporary one."""
        self.kill()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- driving it --------------------------------------------------------------------

    def ctl(self, *args: str, timeout: float = CTL_TIMEOUT) -> str:
        """``rabbitmqctl -n <node> ARGS``; its output, or BrokerError with its stderr."""
        command = [tool("rabbitmqctl"), "-n", self.nodename, *args]
        try:
            done = subprocess.run(
                command,
                env=self.env(),
                cwd=self.root,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(f"rabbitmqctl {' '.join(args)} on {self.nodename} hung") from None
        if done.returncode != 0:
            raise BrokerError(
                f"rabbitmqctl {' '.join(args)} on {self.nodename} failed "
                f"({done.returncode}): {(done.stderr or done.stdout).strip()[:2000]}"
            )
        return done.stdout

    def eval(self, expression: str) -> str:
        """Evaluate an Erlang expression on the node; its printed result."""
        return self.ctl("eval", expression).strip()

    def add_user(
        self, user: str, password: str, *, vhost: str = "/", tags: Sequence[str] = ()
    ) -> None:
        """A user with every permission on ``vhost`` (guest logs in from loopback only)."""
        self.ctl("add_user", user, password)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        if tags:
            self.ctl("set_user_tags", user, *tags)

    def cluster_status(self) -> dict[str, Any]:
        """``rabbitmqctl cluster_status`` as a dict (``running_nodes``, ``disk_nodes``...)."""
        status: dict[str, Any] = json.loads(self.ctl("cluster_status", "--formatter", "json"))
        return status

    def tail(self, lines: int = 40) -> str:
        """The end of the node's log (or of its console output when there is no log)."""
        for path in (self.log_file, self.root / "server.out"):
            if path.exists() and path.stat().st_size:
                text = path.read_text(errors="replace").splitlines()
                return "\n".join(text[-lines:])
        return "(no log)"

    # -- inside ------------------------------------------------------------------------

    def _write_files(self) -> None:
        root = self.root
        for folder in (root, root / "conf.d", root / "mnesia", root / "log"):
            folder.mkdir(parents=True, exist_ok=True)
        write_cookie(self.home)
        listener = (
            f"listeners.tcp.1 = {HOST}:{self.amqp_port}" if self.plain else "listeners.tcp = none"
        )
        config = [
            "# written by brokers.rabbitmq_node: this node's own, not /etc/rabbitmq's",
            listener,
            "log.file.level = info",
            "log.console = false",
            *self.config_lines,
        ]
        (root / "rabbitmq.conf").write_text("\n".join(config) + "\n")
        (root / "rabbitmq-env.conf").write_text("# nothing: see brokers.rabbitmq_node\n")
        (root / "enabled_plugins").write_text("[].\n")
        advanced = root / "advanced.config"
        if self.advanced_config is not None:
            advanced.write_text(self.advanced_config)
        elif advanced.exists():
            advanced.unlink()

    def _said_started(self, log_from: int) -> bool:
        """The node's log says (since ``log_from``) what `await_startup` waits for:
        the boot is complete, every listener open. Saves a `rabbitmqctl` run (~1.5 s)."""
        if not self.log_file.exists():
            return False
        with self.log_file.open("rb") as f:
            f.seek(log_from)
            return _STARTED.encode() in f.read()

    def _no_log_but_listening(self, started: float) -> bool:
        """No log file a while after starting (logging to a file turned off), and its
        port answers: time to ask `rabbitmqctl await_startup` instead."""
        late = time.monotonic() - started > 15.0
        return late and not self.log_file.exists() and self.plain and port_open(self.amqp_port)

    def _read_pid(self) -> int:
        path = self.root / "node.pid"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                return int(path.read_text().strip())
            time.sleep(0.05)
        return int(self.eval("list_to_integer(os:getpid())."))

    def _signal(self, sig: signal.Signals) -> None:
        pid = self._pid
        if pid is None:  # never saw it start: the script's own pid is all we have
            assert self._proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)  # its session: the script and its beam
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    @staticmethod
    def _wait_gone(pid: int | None, timeout: float = 10.0) -> None:
        if pid is None:
            return
        deadline = time.monotonic() + timeout
        stat = Path(f"/proc/{pid}/stat")
        while time.monotonic() < deadline:
            try:
                if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return  # dead; its parent has not reaped it yet
            except (OSError, IndexError):
                return
            time.sleep(0.02)

    def _forget(self) -> None:
        self._proc = None
        self._pid = None
        _live.pop(id(self), None)


def url_of(
    addresses: Sequence[str],
    user: str = "guest",
    password: str = "guest",
    *,
    vhost: str = "/",
    scheme: str = "amqp",
    **options: str,
) -> str:
    """An amqp(s) URL naming every ``host:port`` of ``addresses``, comma-separated."""
    path = "/" if vhost == "/" else "/" + quote(vhost, safe="")
    query = f"?{urlencode(options)}" if options else ""
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return f"{scheme}://{credentials}@{','.join(addresses)}{path}{query}"


@atexit.register
def _kill_leftovers() -> None:
    """A run that ends without closing its nodes (an error, ^C) leaves none running."""
    for node in list(_live.values()):
        with contextlib.suppress(Exception):
            node.kill()
