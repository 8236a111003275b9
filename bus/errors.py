"""Every error the bus raises derives from BusError, so callers can catch one type."""

from __future__ import annotations


class BusError(Exception):
    """Base of all bus errors."""


class ConfigError(BusError):
    """Bad URL, unknown scheme or a missing extra; the message says how to fix it."""


class RequestTimeout(BusError):
    """No reply arrived before the request's timeout; nothing stays pending."""


class RemoteError(BusError):
    """The responder raised; the text names its error type and message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.remote_message = message


class Reject(BusError):
    """Raised by a handler: dead-letter this message now, without retrying."""


class DecodeError(BusError):
    """A body could not be decoded into the handler's payload type."""


class MessageTooLarge(BusError):
    """A message exceeded the bus's max_message_size, or the broker refused it as too
    large (adapters raise it then, so the core can send less)."""


class PublishError(BusError):
    """The broker did not take a message: it was refused, or the connection was lost."""


class ConnectionLost(BusError):
    """The broker connection is gone and could not be re-established in time."""
