"""The memory:// URL: ``memory://[name][?max_queue=N&overflow=block|reject]``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bus.errors import ConfigError
from bus.url import query_params, redact

DEFAULT_MAX_QUEUE = 100_000


@dataclass(frozen=True, slots=True)
class MemoryConfig:
    """One embedded broker's settings. Buses whose URLs share a name share a broker; the
    first to open it sets these."""

    name: str
    max_queue: int = DEFAULT_MAX_QUEUE
    """Messages a group's queue holds before publishers wait (or are refused)."""
    overflow: str = "block"
    """What publishing to a full queue does: ``block`` waits for room, ``reject`` raises."""

    @classmethod
    def from_url(cls, url: str) -> MemoryConfig:
        parts = urlsplit(url)
        name = (parts.netloc + parts.path).strip("/") or "default"
        params = query_params(url)
        unknown = set(params) - {"max_queue", "overflow"}
        if unknown:
            raise ConfigError(
                f"unknown option(s) {sorted(unknown)} in {redact(url)!r}; memory:// takes "
                "max_queue and overflow"
            )
        try:
            max_queue = int(params.get("max_queue", DEFAULT_MAX_QUEUE))
        except ValueError:
            raise ConfigError(f"max_queue must be a whole number in {redact(url)!r}") from None
        overflow = params.get("overflow", "block")
        if max_queue < 1 or overflow not in ("block", "reject"):
            raise ConfigError(
                f"bad memory:// options in {redact(url)!r}: max_queue must be >= 1 and "
                "overflow block or reject"
            )
        return cls(name=name, max_queue=max_queue, overflow=overflow)
