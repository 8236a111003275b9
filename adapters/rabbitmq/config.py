"""One config struct parsed from an ``amqp://`` or ``amqps://`` URL.

Query options the adapter reads (all optional); any other query parameter (``heartbeat``,
``timeout``, ``name``, TLS files...) goes to aio-pika as it is:

- ``exchange``: the topic exchange topics are published to (default ``bus``)
- ``prefetch``: unsettled deliveries per consumer, overriding what the core asks for
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
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from bus.errors import ConfigError
from bus.url import redact

_EXCHANGE = re.compile(r"[A-Za-z0-9._-]{1,40}")
_OURS = frozenset({"exchange", "prefetch", "queue_type", "confirm", "max_length"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class RabbitConfig(msgspec.Struct, frozen=True, kw_only=True):
    amqp_url: str
    """The URL handed to aio-pika: the bus's own query options removed."""
    redacted: str
    """The URL as given, password hidden: the only form that may be logged or shown."""
    exchange: str = "bus"
    prefetch: int | None = None
    queue_type: str = "classic"
    confirm: bool = True
    max_length: int | None = None


def parse(url: str) -> RabbitConfig:
    """The config for ``url``; ConfigError naming the option when one is wrong."""
    shown = redact(url)
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("amqp", "amqps"):
        raise ConfigError(f"{shown!r} is not an amqp:// or amqps:// URL")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in _OURS}
    rest = [(k, v) for k, v in pairs if k not in _OURS]
    amqp_url = urlunsplit(parts._replace(query=urlencode(rest)))
    exchange = ours.get("exchange", "bus")
    # No ':' (it joins exchange, group and topic in queue names); 40 at most keeps the
    # longest queue name under RabbitMQ's 255 bytes (see bus.names).
    if not _EXCHANGE.fullmatch(exchange) or exchange.startswith("amq."):
        raise ConfigError(
            f"exchange={exchange!r} in {shown!r}: use 1-40 characters from A-Z a-z 0-9 . _ -,"
            " not starting 'amq.'"
        )
    queue_type = ours.get("queue_type", "classic").lower()
    if queue_type not in ("classic", "quorum"):
        raise ConfigError(f"queue_type={queue_type!r} in {shown!r}: use classic or quorum")
    return RabbitConfig(
        amqp_url=amqp_url,
        redacted=shown,
        exchange=exchange,
        prefetch=_positive(ours.get("prefetch"), "prefetch", shown),
        max_length=_positive(ours.get("max_length"), "max_length", shown),
        queue_type=queue_type,
        confirm=_flag(ours.get("confirm", "true"), "confirm", shown),
    )


def _positive(value: str | None, name: str, shown: str) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name}={value!r} in {shown!r}: use a whole number of 1 or more")
    return int(value)


def _flag(value: str, name: str, shown: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{name}={value!r} in {shown!r}: use true or false")
