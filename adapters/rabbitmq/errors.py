"""aio-pika/aiormq exceptions, translated into bus errors at this boundary."""

from __future__ import annotations

import asyncio

import aiormq.exceptions as amqp

from bus.errors import BusError, ConfigError, ConnectionLost, PublishError

# Channel errors that say the request itself is wrong: retrying cannot help.
_PERMANENT = (
    amqp.ChannelNotFoundEntity,
    amqp.ChannelAccessRefused,
    amqp.ChannelPreconditionFailed,
    amqp.ChannelLockedResource,
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` means the connection or channel went away, so the same
    operation may succeed once it is back."""
    if isinstance(exc, (amqp.DeliveryError, *_PERMANENT)):
        return False
    return isinstance(
        exc,
        amqp.AMQPError
        | amqp.ChannelInvalidStateError
        | ConnectionError
        | asyncio.TimeoutError
        | OSError,
    )


class Unroutable(PublishError):
    """RabbitMQ returned a mandatory publish: no queue by the name it was sent to (one
    deleted by an operator, say)."""


def publish_error(exc: BaseException, where: str) -> BusError:
    """The bus error for a publish to ``where`` that failed with ``exc``."""
    if isinstance(exc, amqp.PublishError):
        return Unroutable(f"RabbitMQ returned the message published to {where}: {exc}")
    if isinstance(exc, amqp.DeliveryError):
        return PublishError(f"RabbitMQ refused the message published to {where}: {exc}")
    return PublishError(f"publishing to {where} failed: {type(exc).__name__}: {exc}")


def connection_lost(exc: BaseException, redacted_url: str) -> BusError:
    """The error for a first connect that failed: ConfigError when the broker answered
    but refused us (login, vhost), ConnectionLost when it could not be reached."""
    if isinstance(exc, amqp.AuthenticationError | amqp.ProbableAuthenticationError):
        return ConfigError(
            f"RabbitMQ at {redacted_url} refused the login ({exc}); "
            "check the user and password in the URL"
        )
    if isinstance(exc, amqp.InvalidFrameError):  # Connection.Close instead of OpenOk
        return ConfigError(
            f"RabbitMQ at {redacted_url} refused to open the connection ({exc}); "
            "check the vhost in the URL's path and the user's permissions on it"
        )
    detail = str(exc) or type(exc).__name__
    return ConnectionLost(f"cannot reach RabbitMQ at {redacted_url}: {detail}")


def broker_error(exc: BaseException, what: str) -> BusError:
    """The bus error for ``what`` (declaring, browsing...) failing with ``exc``."""
    if isinstance(exc, BusError):
        return exc
    if is_transient(exc):
        return ConnectionLost(f"{what} failed, the connection was lost: {exc}")
    return ConfigError(
        f"RabbitMQ refused {what}: {exc}. A queue or exchange of that name may exist with "
        "other arguments (another queue_type, say), or the user may lack permissions."
    )
