"""Transaction: one database transaction of a Bus's store, and the messages published in it.

``tx.publish`` builds the message as ``Bus.publish`` would (id, encoded body, headers
with the trace context, size and topic checked now) and keeps it; when the ``async
with`` block ends cleanly the messages are written to the outbox in that same
transaction, in one statement, just before it commits. A rollback (or an exception
leaving the block) writes nothing, so nothing reaches the broker. After the commit the
bus's relay sends them (see ``bus.relay``).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import msgspec

from bus.errors import BusError
from bus.message import CAUSATION_ID, new_id
from bus.store.base import OutboxRow, Store, StoreTx

if TYPE_CHECKING:
    from bus.bus import Bus

_encode_headers = msgspec.json.Encoder().encode


class Transaction:
    """``async with b.transaction() as tx``: ``tx.connection`` is the driver's own
    connection, inside the transaction (asyncpg's for PostgreSQL; a ``SqliteConnection``
    with the same method names for SQLite); ``tx.publish`` adds an outbox message.

    Committed when the block ends cleanly, rolled back when it raises. Enlisted in a
    caller's connection (``b.transaction(connection=conn)``) that is already in a
    transaction, it neither commits nor rolls back: the caller's commit sends the
    messages, the caller's rollback drops them.
    """

    __slots__ = ("_bus", "_carried", "_connection", "_entered", "_rows", "_store", "_tx")

    def __init__(
        self,
        bus: Bus,
        store: Store,
        connection: object | None = None,
        *,
        carried: tuple[str, str] | None = None,
    ) -> None:
        self._bus = bus
        self._store = store
        self._connection = connection
        self._carried = carried
        """(correlation id, causation id) that messages published here carry on."""
        self._entered: AbstractAsyncContextManager[StoreTx] | None = None
        self._tx: StoreTx | None = None
        self._rows: list[OutboxRow] = []

    def __repr__(self) -> str:
        state = "open" if self._tx is not None else "not open"
        return f"Transaction({state}, {len(self._rows)} message(s) to publish)"

    @property
    def connection(self) -> Any:
        """The driver's connection, in this transaction: run your own SQL on it."""
        return self._open().connection

    def _open(self) -> StoreTx:
        if self._tx is None:
            raise BusError(
                "this transaction is not open: use it inside `async with b.transaction() as tx`"
            )
        return self._tx

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish ``payload`` to ``topic`` if, and once, this transaction commits; return
        its message id (redeliveries of it carry the same id). Raises now for a bad topic
        or a message over the bus's ``max_message_size``."""
        self._open()
        bus = self._bus
        body = bus._body(topic, payload)
        if self._carried is not None:
            correlation_id = correlation_id or self._carried[0]
            headers = (
                {**headers, CAUSATION_ID: self._carried[1]}
                if headers
                else {CAUSATION_ID: self._carried[1]}
            )
        message_id = new_id()
        telemetry = bus._telemetry
        if telemetry.tracing:  # the row carries this span as the consumer's parent
            with telemetry.publish_span(topic, message_id, correlation_id):
                message = bus._message(payload, body, message_id, key, headers, correlation_id)
        else:
            message = bus._message(payload, body, message_id, key, headers, correlation_id)
        self._rows.append(
            OutboxRow(
                topic=topic,
                key=key,
                message_id=message_id,
                correlation_id=correlation_id,
                content_type=message.content_type,
                headers=_encode_headers(message.headers),
                body=body,
            )
        )
        return message_id

    async def _record(self, group: str, message_id: str) -> bool:
        """Record that ``group`` handled ``message_id`` in this transaction; False when it
        was recorded before (see ``bus.inbox``)."""
        return await self._open().record_inbox(group, message_id)

    async def __aenter__(self) -> Transaction:
        if self._entered is not None:
            raise BusError("a Transaction is used once: call b.transaction() again")
        entered = self._store.begin(self._connection)
        self._tx = await entered.__aenter__()
        self._entered = entered
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        entered, tx = self._entered, self._tx
        assert entered is not None and tx is not None
        self._tx = None
        if exc is None and self._rows:
            try:
                await tx.add_outbox(self._rows)
            except BaseException as err:
                await entered.__aexit__(type(err), err, err.__traceback__)
                raise
        return await entered.__aexit__(exc_type, exc, tb)


__all__ = ["Transaction"]
