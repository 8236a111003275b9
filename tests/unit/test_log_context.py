"""Every record a handler logs carries the message being handled, once a MessageFilter
is on the logging handler: on the workers' common path, with a Context, and on a
request's whole path; never a message handled before or by another worker."""

from __future__ import annotations

import logging

import anyio
import anyio.lowlevel

import bus
from bus.logs import MessageFilter
from tests.conformance.helpers import DEADLINE, Item, unique

log = logging.getLogger("tests.log_context")


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_records_logged_by_handlers_carry_their_message() -> None:
    kept = Kept()
    kept.addFilter(MessageFilter())
    log.addHandler(kept)
    log.setLevel(logging.INFO)
    plain, with_ctx, asked = unique("plain"), unique("ctx"), unique("ask")
    svc = bus.Service(unique("svc"))
    seen: dict[str, str] = {}  # what the handler saw of its own message, by payload

    @svc.subscribe(plain, concurrency=4)
    async def on_plain(item: Item) -> None:
        await anyio.lowlevel.checkpoint()  # another worker's message in between
        log.info("plain %d", item.n)

    @svc.subscribe(with_ctx, concurrency=4)
    async def on_ctx(item: Item, ctx: bus.Context) -> None:
        seen[f"ctx {item.n}"] = ctx.message_id
        await anyio.lowlevel.checkpoint()
        log.info("ctx %d", item.n)

    @svc.respond(asked)
    async def on_ask(item: Item, ctx: bus.Context) -> Item:
        seen[f"ask {item.n}"] = ctx.message_id
        log.info("ask %d", item.n)
        return item

    try:
        async with bus.Bus(f"memory://{unique('logs')}", services=[svc]) as b:
            for i in range(8):
                await b.publish(plain, Item(i))
                await b.publish(with_ctx, Item(i))
            assert await b.request(asked, Item(1), response=Item, timeout=DEADLINE) == Item(1)
            with anyio.fail_after(DEADLINE):
                while len(kept.records) < 17:
                    await anyio.sleep(0.01)
            log.info("outside")
    finally:
        log.removeHandler(kept)

    by_text = {r.getMessage(): r for r in kept.records}
    assert len(by_text) == 18
    for text, record in by_text.items():
        if text == "outside":
            assert not hasattr(record, "message_id")
            continue
        kind = text.split()[0]
        topic = {"plain": plain, "ctx": with_ctx, "ask": asked}[kind]
        assert (record.topic, record.group) == (topic, svc.name), text
        assert isinstance(record.message_id, str), text
        if text in seen:
            assert record.message_id == seen[text]
    # Each message its own id: no record carries a message handled before it.
    ids = [r.message_id for t, r in by_text.items() if t.startswith(("plain", "ctx"))]
    assert len(set(ids)) == 16
    assert by_text["ask 1"].correlation_id is not None
