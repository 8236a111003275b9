"""The embedded in-memory broker, ``memory://`` (the default)."""

from adapters.memory.transport import MemoryTransport

__all__ = ["MemoryTransport"]
