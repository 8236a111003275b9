"""One config struct parsed from an ``amqp://`` or ``amqps://`` URL.

The URL may name several nodes of one cluster, comma-separated, each with its own port
(the scheme's default, 5672 or 5671, when left out); everything else is shared::

    amqp://user:pass@h1:5672,h2:5673,[::1]:5674/vhost?queue_type=quorum

The link (link.py) tries them in that order on the first connect and, after losing one,
starts from the next.

Query options the adapter reads (all optional); any other query parameter (``heartbeat``,
``timeout``, ``name``, TLS files...) goes to aio-pika as it is:

- ``exchange``: the topic exchange topics are published to (default ``bus``)
- ``prefetch``: unsettled deliveries per consumer, overriding what the core asks for
  (twice the handler concurrency: bus.bus.PREFETCH_PER_HANDLER)
- ``queue_type``: ``classic`` (default) or ``quorum`` (replicated clusters)
- ``confirm``: ``true`` (default) waits for publisher confirms; ``false`` returns once
  written to the socket, which gives up the guarantee that ``publish`` means "held"
- ``max_length``: a group's queue holds at most this many ready messages; RabbitMQ
  refuses (nacks) publishes beyond, and ``publish`` raises PublishError. Beware: a
  retry coming back from its delay queue into a full queue is dropped by RabbitMQ
- ``heartbeat``: seconds between AMQP heartbeats (aio-pika's default 60)
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import msgspec

from bus.errors import ConfigError
from bus.url import redact

Positive = Annotated[int, msgspec.Meta(ge=1)]
# No ':' (it joins exchange, group and topic in queue names); 40 at most keeps the
# longest queue name under RabbitMQ's 255 bytes (see bus.names).
Exchange = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._-]{1,40}$")]


class UrlOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The bus's own query options: ``msgspec.convert(query, UrlOptions, strict=False)``
    turns their strings into ints and bools and names the first one that is wrong."""

    exchange: Exchange = "bus"
    prefetch: Positive | None = None
    queue_type: Literal["classic", "quorum"] = "classic"
    confirm: bool = True
    max_length: Positive | None = None


_OURS = frozenset(UrlOptions.__struct_fields__)
_FIELD = re.compile(r"at `\$\.(\w+)`")
_HINTS = {
    "exchange": "use 1-40 characters from A-Z a-z 0-9 . _ -, not starting 'amq.'",
    "prefetch": "use a whole number of 1 or more",
    "max_length": "use a whole number of 1 or more",
    "queue_type": "use classic or quorum",
    "confirm": "use true or false",
}


class RabbitConfig(msgspec.Struct, frozen=True, kw_only=True):
    amqp_url: str
    """The URL handed to aio-pika for the first node: the bus's own query options removed."""
    redacted: str
    """The URL as given, password hidden: the only form that may be logged or shown."""
    user: str = "guest"
    """Who we log in as: RabbitMQ refuses a publish whose user_id property is anyone else."""
    exchange: str = "bus"
    prefetch: int | None = None
    queue_type: str = "classic"
    confirm: bool = True
    max_length: int | None = None
    hosts: tuple[str, ...] = ()
    """``host:port`` of every node the URL names, in its order (one for a plain URL)."""
    amqp_urls: tuple[str, ...] = ()
    """One aio-pika URL per node of ``hosts``, in the same order; the first is ``amqp_url``."""
    tls: bool = False
    """``amqps://``: every node is spoken to over TLS."""

    @property
    def nodes(self) -> tuple[tuple[str, str], ...]:
        """(``host:port``, aio-pika URL) of every node, in the URL's order."""
        if not self.amqp_urls:  # built by hand from amqp_url alone
            return ((self.hosts[0] if self.hosts else "?", self.amqp_url),)
        return tuple(zip(self.hosts, self.amqp_urls, strict=True))


def parse(url: str) -> RabbitConfig:
    """The config for ``url``; ConfigError naming the option when one is wrong."""
    shown = redact(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address, say
        raise ConfigError(f"bad URL {shown!r}: {exc}") from None
    if parts.scheme.lower() not in ("amqp", "amqps"):
        raise ConfigError(f"{shown!r} is not an amqp:// or amqps:// URL")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in _OURS}
    if "queue_type" in ours:
        ours["queue_type"] = ours["queue_type"].lower()
    rest = [(k, v) for k, v in pairs if k not in _OURS]
    opts = _options(ours, shown)
    if opts.exchange.startswith("amq."):  # reserved by RabbitMQ
        raise ConfigError(f"exchange={opts.exchange!r} in {shown!r}: {_HINTS['exchange']}")
    base = parts._replace(query=urlencode(rest))
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    default_port = 5671 if parts.scheme.lower() == "amqps" else 5672
    entries = hostlist.split(",")
    if entries == [""]:  # amqp:///vhost: aio-pika's default host, as before
        entries = ["localhost"]
    nodes = [_node(entry, default_port, shown) for entry in entries]
    urls: tuple[str, ...]
    if len(nodes) == 1:  # a plain URL goes to aio-pika as it was written
        urls = (urlunsplit(base),)
    else:
        urls = tuple(
            urlunsplit(base._replace(netloc=f"{userinfo}{at}{host}:{port}")) for host, port in nodes
        )
    return RabbitConfig(
        amqp_url=urls[0],
        hosts=tuple(f"{host}:{port}" for host, port in nodes),
        amqp_urls=urls,
        redacted=shown,
        user=unquote(parts.username) if parts.username else "guest",
        exchange=opts.exchange,
        prefetch=opts.prefetch,
        queue_type=opts.queue_type,
        confirm=opts.confirm,
        max_length=opts.max_length,
        tls=parts.scheme.lower() == "amqps",
    )


def _node(entry: str, default_port: int, shown: str) -> tuple[str, int]:
    """(host, port) of one ``host[:port]`` entry of the URL's host list; ConfigError
    when it is empty or its port is not a number from 1 to 65535."""
    if entry.startswith("["):  # an IPv6 literal: [::1]:5672
        inside, bracket, after = entry[1:].partition("]")
        host, port_text = f"[{inside}]", after.removeprefix(":")
        ok = bool(bracket and inside) and (after == "" or after.startswith(":"))
    else:
        host, _, port_text = entry.partition(":")
        ok = bool(host) and ":" not in port_text
    if not ok or not ((port_text.isascii() and port_text.isdigit()) or port_text == ""):
        raise ConfigError(
            f"bad host {entry!r} in {shown!r}: name each node as host:port, "
            "comma-separated, e.g. amqp://user:pass@h1:5672,h2:5673/vhost"
        )
    port = int(port_text) if port_text else default_port
    if not 1 <= port <= 65535:
        raise ConfigError(f"bad port in host {entry!r} in {shown!r}: use a port from 1 to 65535")
    return host, port


def _options(query: dict[str, str], shown: str) -> UrlOptions:
    try:
        return msgspec.convert(query, UrlOptions, strict=False)
    except msgspec.ValidationError as exc:
        found = _FIELD.search(str(exc))
        if found is None:  # not one option's fault (cannot happen with string values)
            raise ConfigError(f"bad options in {shown!r}: {exc}") from None
        name = found.group(1)
        raise ConfigError(
            f"{name}={query.get(name)!r} in {shown!r}: {_HINTS[name]}"
            f" ({str(exc).split(' - at ')[0]})"
        ) from None
