"""Logging with the message being handled on every record.

The dispatch workers set ``current`` for each message they handle; ``MessageFilter``
copies it onto every record logged meanwhile, the handler's own records included, as
``message_id``, ``correlation_id``, ``topic`` and ``group``. The CLI installs the filter;
an application adds it to its own handlers with ``handler.addFilter(MessageFilter())``.

Until a MessageFilter is made, nothing reads ``current``, so the workers do not set it
(``wanted``): a context variable set per message is a few percent of a short handler's
path.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

# (message id, correlation id, topic, group) of the message this task is handling.
current: ContextVar[tuple[str, str | None, str, str] | None] = ContextVar(
    "bus_current_message", default=None
)


wanted = False
"""True once a MessageFilter exists: the workers then set ``current`` per message."""


class MessageFilter(logging.Filter):
    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        global wanted
        wanted = True

    def filter(self, record: logging.LogRecord) -> bool:
        handling = current.get()
        if handling is not None:
            message_id, correlation_id, topic, group = handling
            record.__dict__.setdefault("message_id", message_id)
            record.__dict__.setdefault("correlation_id", correlation_id)
            record.__dict__.setdefault("topic", topic)
            record.__dict__.setdefault("group", group)
        return True
