"""Service: a named bundle of handlers, declared with decorators.

A handler's first parameter's annotation is its payload type (a msgspec Struct, any type
msgspec decodes, or ``bytes`` for raw). A second parameter annotated ``bus.Context`` is
optional. Annotations may be strings; they are resolved once, here, never per message.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bus import names
from bus.context import Context
from bus.errors import ConfigError
from bus.retry import NO_RETRY, Retry

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)

DEFAULT_CONCURRENCY = 16


@dataclass(frozen=True, slots=True)
class Subscription:
    """One handler bound to a topic; ``reply`` marks a responder."""

    topic: str
    group: str
    handler: Handler
    payload_type: Any
    wants_context: bool
    retry: Retry
    concurrency: int
    reply: bool
    idempotent: bool = False
    """Run through the inbox (bus.inbox): at most once in effect per message id."""

    @property
    def name(self) -> str:
        return getattr(self.handler, "__qualname__", repr(self.handler))


def _inspect(handler: Handler) -> tuple[Any, bool]:
    """The payload type and whether the handler takes a Context."""
    if not inspect.iscoroutinefunction(handler):
        raise ConfigError(f"handler {handler!r} must be an `async def` function")
    params = list(inspect.signature(handler).parameters.values())
    if not params or len(params) > 2:
        raise ConfigError(
            f"handler {handler.__qualname__} must take (payload) or (payload, ctx: bus.Context)"
        )
    try:
        hints = typing.get_type_hints(handler)
    except Exception as exc:
        raise ConfigError(
            f"cannot resolve the annotations of {handler.__qualname__}: {exc}"
        ) from None
    payload_type = hints.get(params[0].name)
    if payload_type is None:
        raise ConfigError(
            f"annotate the first parameter of {handler.__qualname__} with its payload type "
            "(a msgspec Struct, or bytes for raw bodies)"
        )
    return payload_type, len(params) == 2


class Service:
    """A named bundle of handlers; its name is the default consumer group."""

    def __init__(self, name: str) -> None:
        names.check_group(name, "service name")
        self.name = name
        self.subscriptions: list[Subscription] = []

    def __repr__(self) -> str:
        return f"Service({self.name!r}, handlers={len(self.subscriptions)})"

    def subscribe(
        self,
        topic: str,
        *,
        group: str | None = None,
        retry: Retry | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        idempotent: bool = False,
    ) -> Callable[[H], H]:
        """Call the decorated handler for every message on ``topic`` that reaches this
        service's group (or ``group``). Failures are retried by ``retry`` (default
        ``bus.Retry()``), then dead-lettered.

        ``idempotent=True`` (needs a Bus with ``store=``): the handler runs inside one
        store transaction (``ctx.transaction``) that also records the message id for
        this group; a message already recorded is acked without running the handler."""
        return self._register(
            topic,
            self.name if group is None else group,
            retry or Retry(),
            concurrency,
            False,
            idempotent=idempotent,
        )

    def respond(self, topic: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> Callable[[H], H]:
        """Answer requests on ``topic``: the handler's return value is the reply, and an
        exception it raises reaches the caller as ``bus.RemoteError``."""
        return self._register(topic, self.name, NO_RETRY, concurrency, True)

    def _register(
        self,
        topic: str,
        group: str,
        retry: Retry,
        concurrency: int,
        reply: bool,
        *,
        idempotent: bool = False,
    ) -> Callable[[H], H]:
        names.check_topic(topic)
        names.check_group(group)
        if not isinstance(retry, Retry):
            raise ConfigError(f"retry must be a bus.Retry, not {type(retry).__name__}")
        if concurrency < 1:
            raise ConfigError(f"concurrency must be 1 or more, not {concurrency}")

        def decorate(handler: H) -> H:
            payload_type, wants_context = _inspect(handler)
            self.subscriptions.append(
                Subscription(
                    topic,
                    group,
                    handler,
                    payload_type,
                    wants_context,
                    retry,
                    concurrency,
                    reply,
                    bool(idempotent),
                )
            )
            return handler

        return decorate


__all__ = ["Context", "Service", "Subscription"]
