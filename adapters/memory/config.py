"""The memory:// URL: ``memory://[name][?max_queue=N&overflow=block|reject]``."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from bus.url import options

DEFAULT_MAX_QUEUE = 100_000


class Options(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_queue: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_MAX_QUEUE
    """Messages a group's queue holds before publishers wait (or are refused)."""
    overflow: Literal["block", "reject"] = "block"
    """What publishing to a full queue does: ``block`` waits for room, ``reject`` raises."""


class MemoryConfig(msgspec.Struct, frozen=True, kw_only=True):
    """One embedded broker's settings. Buses whose URLs share a name share a broker; the
    first to open it sets these."""

    name: str
    max_queue: int = DEFAULT_MAX_QUEUE
    overflow: str = "block"

    @classmethod
    def from_url(cls, url: str) -> MemoryConfig:
        parts = urlsplit(url)
        name = (parts.netloc + parts.path).strip("/") or "default"
        opts = options(url, Options)
        return cls(name=name, max_queue=opts.max_queue, overflow=opts.overflow)
