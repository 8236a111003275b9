"""One config struct parsed from a ``kafka://`` or ``kafka+ssl://`` URL.

``kafka://[user:password@]host:port[,host:port]/?option=value&...``. Query options (all
optional):

- ``partitions`` (8) and ``replication_factor`` (1): for topics the adapter creates
- ``fetch_max_wait_ms`` (100): how long the broker may hold a fetch while waiting for data
- ``session_timeout_ms`` (10000): a member silent this long leaves its group
- ``heartbeat_interval_ms`` (a third of the session timeout, at most 3000)
- ``max_poll_interval_ms`` (300000): how long a rebalance waits for a member whose revoked
  partitions still have handlers running; past it the member is dropped from the group
- ``commit_interval_ms`` (100): how often settled offsets are committed
- ``read_ahead`` (500): records a consumer reads ahead of its handlers (never committed
  before they are handled)
- ``publish_timeout_ms`` (30000): how long a publish waits for the broker to confirm a
  record (acks=all) before it raises PublishError; also the producer's request timeout
- ``client_id`` (``bus``)
- ``sasl_mechanism`` (``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``), ``sasl_username``,
  ``sasl_password`` (or user and password in the URL): SASL, over TLS with kafka+ssl://
- ``ssl_cafile``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname`` (true): TLS

The password appears in no repr, log line or error: only ``redacted`` is ever shown.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote, urlsplit

import msgspec

from bus.errors import ConfigError
from bus.url import options as query_options
from bus.url import redact

_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

Count = Annotated[int, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class UrlOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The query options as given; ``bus.url.options`` converts their strings to ints and
    bools and names the first one that is wrong or unknown."""

    partitions: Count = 8
    replication_factor: Count = 1
    fetch_max_wait_ms: Count = 100
    session_timeout_ms: Count = 10000
    heartbeat_interval_ms: Count = 0
    """0: a third of the session timeout, at most 3000."""
    max_poll_interval_ms: Count = 300000
    commit_interval_ms: Count = 100
    read_ahead: Count = 500
    publish_timeout_ms: Positive = 30000
    client_id: str = "bus"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True


class KafkaConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The options resolved (made only by ``parse``): every field is set there, so the
    defaults live in one place, ``UrlOptions``."""

    bootstrap_servers: list[str]
    redacted: str
    """The URL as given, password hidden: the only form that may be logged or shown."""
    partitions: int
    replication_factor: int
    fetch_max_wait_ms: int
    session_timeout_ms: int
    heartbeat_interval_ms: int
    max_poll_interval_ms: int
    commit_interval_ms: int
    read_ahead: int
    publish_timeout_ms: int
    client_id: str
    tls: bool
    ssl_cafile: str | None
    ssl_certfile: str | None
    ssl_keyfile: str | None
    ssl_check_hostname: bool
    sasl_mechanism: str | None
    sasl_username: str | None
    sasl_password: str | None

    def __repr__(self) -> str:
        return f"KafkaConfig({self.redacted!r})"

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client of this config gets."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
        }
        if self.sasl_mechanism is not None:
            options["security_protocol"] = "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password
        elif self.tls:
            options["security_protocol"] = "SSL"
        if self.tls:
            from aiokafka.helpers import create_ssl_context

            context = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
            context.check_hostname = self.ssl_check_hostname
            options["ssl_context"] = context
        return options


def parse(url: str) -> KafkaConfig:
    """The config for ``url``; ConfigError naming the option when one is wrong."""
    shown = redact(url)
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("kafka", "kafka+ssl") or not sep:
        raise ConfigError(f"{shown!r} is not a kafka:// or kafka+ssl:// URL")
    # urlsplit cannot read a comma-separated host list with ports: take the netloc apart.
    netloc = urlsplit("//" + rest.split("?", 1)[0].split("/", 1)[0]).netloc
    userinfo, at, hosts = netloc.rpartition("@")
    servers = [h.strip() for h in hosts.split(",") if h.strip()]
    if not servers:
        raise ConfigError(f"{shown!r} names no broker: use kafka://host:9092[,host:9092]")
    for server in servers:
        _, colon, port = server.rpartition(":")
        if not colon or not port.isdigit():
            raise ConfigError(f"broker {server!r} in {shown!r}: use host:port")
    opts = query_options(url, UrlOptions)
    session = opts.session_timeout_ms
    heartbeat = opts.heartbeat_interval_ms or max(1, min(3000, session // 3))
    if heartbeat >= session:
        raise ConfigError(f"heartbeat_interval_ms must be below session_timeout_ms in {shown!r}")
    user, password = _credentials(userinfo if at else "", opts)
    mechanism = opts.sasl_mechanism
    if mechanism is None and user is not None:
        mechanism = "PLAIN"
    if mechanism is not None:
        mechanism = mechanism.upper()
        if mechanism not in _MECHANISMS:
            raise ConfigError(
                f"sasl_mechanism={mechanism!r} in {shown!r}: use one of {', '.join(_MECHANISMS)}"
            )
        if user is None or password is None:
            raise ConfigError(f"SASL in {shown!r} needs a user and a password")
    return KafkaConfig(
        bootstrap_servers=servers,
        redacted=shown,
        partitions=max(1, opts.partitions),
        replication_factor=max(1, opts.replication_factor),
        fetch_max_wait_ms=opts.fetch_max_wait_ms,
        session_timeout_ms=session,
        heartbeat_interval_ms=heartbeat,
        max_poll_interval_ms=opts.max_poll_interval_ms,
        commit_interval_ms=max(1, opts.commit_interval_ms),
        read_ahead=max(1, opts.read_ahead),
        publish_timeout_ms=opts.publish_timeout_ms,
        client_id=opts.client_id,
        tls=scheme.lower() == "kafka+ssl",
        ssl_cafile=opts.ssl_cafile,
        ssl_certfile=opts.ssl_certfile,
        ssl_keyfile=opts.ssl_keyfile,
        ssl_check_hostname=opts.ssl_check_hostname,
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=password,
    )


def _credentials(userinfo: str, opts: UrlOptions) -> tuple[str | None, str | None]:
    user: str | None = None
    password: str | None = None
    if userinfo:
        name, colon, secret = userinfo.partition(":")
        user = unquote(name) or None
        password = unquote(secret) if colon else None
    username = opts.sasl_username if opts.sasl_username is not None else user
    return username, opts.sasl_password if opts.sasl_password is not None else password
