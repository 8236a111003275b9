"""Messages published in a transaction (the outbox) count for the kit: ``settle()``
returns only once the bus's relay has sent every committed row, and ``published()``
shows what it sent, with the handler call whose transaction committed it. The relay is
woken at commit, so none of it moves the virtual clock; on a real broker the same."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import msgspec
import pytest

import bus
from bus.testing import TestBus


class Step(msgspec.Struct, frozen=True):
    order_id: str
    n: int


def chain(prefix: str, hops: int) -> list[bus.Service]:
    """``hops`` services, each handling ``{prefix}.{i}`` idempotently and publishing
    ``{prefix}.{i+1}`` through its transaction's outbox; the last topic has no handler."""
    return [_hop(prefix, i) for i in range(hops)]


def _hop(prefix: str, i: int) -> bus.Service:
    service = bus.Service(f"{prefix}-hop{i}")

    @service.subscribe(f"{prefix}.{i}", idempotent=True)
    async def hop(event: Step, ctx: bus.Context) -> None:
        await ctx.transaction.publish(f"{prefix}.{i + 1}", Step(event.order_id, i + 1))

    return service


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.db'}"


async def test_settle_waits_for_every_committed_row_and_published_shows_them(store: str) -> None:
    hops = 4
    started = time.perf_counter()
    async with TestBus(services=chain("ob", hops), store=store) as t:
        for n in range(3):
            await t.publish("ob.0", Step(f"o-{n}", 0), key=f"o-{n}")
        await t.settle()
        # the last hop's rows have no handler: only the relay being idle says they are sent
        last = t.published(f"ob.{hops}", Step)
        assert sorted(last, key=lambda s: s.order_id) == [Step(f"o-{n}", hops) for n in range(3)]
        for i in range(1, hops):
            assert len(t.handled(f"ob.{i}", Step)) == 3
        relayed = [s for s in t.recorder.sent if s.relayed]
        assert len(relayed) == 3 * hops
        assert all(s.by is not None and s.by.topic == f"ob.{int(s.topic[3:]) - 1}" for s in relayed)
        assert t.now == 0.0  # waiting for the relay moved no virtual time
    assert time.perf_counter() - started < 5.0


async def test_a_row_the_test_commits_itself_is_sent_before_settle_returns(store: str) -> None:
    async with TestBus(services=chain("own", 1), store=store) as t:
        async with t.bus.transaction() as tx:
            await tx.publish("own.0", Step("o-1", 0), key="o-1")
        await t.settle()
        assert t.handled("own.0", Step) == [Step("o-1", 0)]
        assert t.published("own.1", Step) == [Step("o-1", 1)]
        async with t.bus.transaction() as tx:
            await tx.publish("own.0", Step("o-2", 0))
        with pytest.raises(RuntimeError):  # rolled back: nothing sent, nothing waited for
            async with t.bus.transaction() as tx:
                await tx.publish("own.0", Step("o-3", 0))
                raise RuntimeError("roll back")
        await t.settle()
        assert [s.order_id for s in t.handled("own.0", Step)] == ["o-1", "o-2"]


async def test_the_outbox_chain_settles_on_rabbitmq(store: str, rabbitmq_url: str) -> None:
    prefix = f"obq{uuid.uuid4().hex[:6]}"
    async with TestBus(services=chain(prefix, 2), url=rabbitmq_url, store=store) as t:
        assert not t.virtual
        await t.publish(f"{prefix}.0", Step("o-1", 0))
        await t.settle()
        assert t.handled(f"{prefix}.1", Step) == [Step("o-1", 1)]
        assert t.published(f"{prefix}.2", Step) == [Step("o-1", 2)]
