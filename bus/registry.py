"""Find the adapter for a URL through the ``bus.adapters`` entry-point group.

Looked up lazily, so ``bus`` never imports ``adapters`` and a third party can add a
broker by declaring an entry point of its own.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from bus.errors import ConfigError
from bus.transport import Transport
from bus.url import redact, scheme

GROUP = "bus.adapters"

# What to install when an adapter's driver is missing, by scheme.
_EXTRAS = {"amqp": "rabbitmq", "amqps": "rabbitmq", "kafka": "kafka", "kafka+ssl": "kafka"}


def open_transport(url: str) -> Transport:
    """A new, unconnected Transport for ``url``."""
    name = scheme(url)
    found = {ep.name: ep for ep in entry_points(group=GROUP)}
    ep = found.get(name)
    if ep is None:
        known = ", ".join(sorted(found)) or "none (is the bus package installed?)"
        raise ConfigError(
            f"unknown broker URL scheme {name!r} in {redact(url)!r}; known schemes: {known}"
        )
    try:
        factory = ep.load()
    except ImportError as exc:
        extra = _EXTRAS.get(name, name)
        raise ConfigError(
            f"the {name}:// adapter needs a driver that is not installed ({exc.name or exc}); "
            f"install it with: pip install 'bus[{extra}]'"
        ) from None
    transport = factory(url)
    if not isinstance(transport, Transport):
        raise ConfigError(f"entry point {ep.value!r} for {name}:// did not return a Transport")
    return transport
