"""A Hypothesis stateful model of the outbox and the inbox: random interleavings of
commits, rollbacks, two relays each claiming, sending and recording step by step, relays
abandoned anywhere in that (a crash: rows claimed, some or all of them sent, none
recorded), leases running out, and deliveries whose handler acks, crashes
mid-transaction, or crashes after its commit before the ack (so the broker delivers
again).

The pieces are the real ones: a store (SQLite, and PostgreSQL), ``bus.Transaction``, the
relay's own claim / send / finish, the inbox's wrapper around an ``idempotent=True``
handler, and the embedded broker (memory://), whose consumers the model drives one
delivery at a time. The handler's effects are a row in ``effects`` and an ``echo``
published through its transaction. Time is not waited on: a crashed relay's lease is
made to run out by a rule, as the clock would.

At every step: no message has taken effect twice, and nothing rolled back exists. After
the last step everything is drained (leases run out, relays and deliveries until none is
left), and then: every committed message took effect exactly once; its echo was
published once in effect (one message id, however many copies the broker holds);
nothing rolled back ever reached the broker; the first copies of each key reached it in
commit order; the outbox is empty and the inbox holds one row per message."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import msgspec
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import bus
from bus.context import Context
from bus.inbox import idempotent
from bus.relay import Relay, _Round
from bus.store import OutboxRow, Store, open_store
from bus.transaction import Transaction

from .conftest import new_schema
from .helpers import Step

KEYS = ("a", "b")
RELAYS = (0, 1)
LEASE = 3600.0  # never runs out by itself during a run: the model says when


class Crash(Exception):
    """A process dying: what it was doing stops here (its transaction rolls back)."""


class _Slot:
    """A live relay and the claim it holds, if any: how far it sent, what it recorded."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.reset()

    def reset(self) -> None:
        self.rows: list[OutboxRow] | None = None
        self.next = 0
        self.done = _Round()


class OutboxInboxModel(RuleBasedStateMachine):
    """See the module. Configured through class attributes by the test."""

    portal: ClassVar[BlockingPortal]
    make_url: ClassVar[Any]  # () -> a new, empty store URL

    def __init__(self) -> None:
        super().__init__()
        self.call = self.portal.call
        self.url = self.make_url()
        self.pg = self.url.startswith("postgres")
        self.topic, self.echo = f"model-{uuid.uuid4().hex[:8]}", f"echo-{uuid.uuid4().hex[:8]}"
        self.committed: dict[int, str] = {}  # seq -> key, in commit order
        self.seq = 0
        self.crash_mid_tx = False
        self.slots: list[_Slot] = []
        self.dead_owners: list[str] = []
        self.call(self._open)

    # -- set-up and the real pieces --------------------------------------------------------

    async def _open(self) -> None:
        self.bus = bus.Bus(f"memory://{uuid.uuid4().hex}")
        await self.bus.start()
        self.store: Store = open_store(self.url)
        await self.store.open()
        async with self.store.begin() as tx:
            await tx.connection.execute("CREATE TABLE effects (seq INTEGER NOT NULL)")
        transport = self.bus.transport
        self.consumer = await transport.consume(self.topic, "model", prefetch=100)
        self.observer = await transport.consume(self.topic, "observer", prefetch=10**6)
        self.echoes = await transport.consume(self.echo, "observer", prefetch=10**6)
        self.slots = [_Slot(await self._new_relay()) for _ in RELAYS]
        service = bus.Service("model")
        insert = "INSERT INTO effects (seq) VALUES (" + ("$1)" if self.pg else "?)")

        @service.subscribe(self.topic, idempotent=True)
        async def handle(step: Step, ctx: bus.Context) -> None:
            tx = ctx.transaction
            await tx.connection.execute(insert, step.seq)
            await tx.publish(self.echo, step, key=step.key)
            if self.crash_mid_tx:
                raise Crash("the handler's process died inside its transaction")

        self.handler = idempotent(service.subscriptions[0], self.bus, self.store).handler

    async def _new_relay(self) -> Relay:  # async: a Relay is made on the event loop
        b = self.bus
        return Relay(self.store, b.transport.publish, b._telemetry, b.max_message_size)

    async def _close(self) -> None:
        await self.store.close()
        await self.bus.close()

    async def _sql(self, statement: str) -> list[Any]:
        async with self.store.begin() as tx:
            return list(await tx.connection.fetch(statement))

    # -- rules --------------------------------------------------------------------------

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3), commit=st.booleans())
    def produce(self, keys: list[str], commit: bool) -> None:
        """A transaction publishing one message per key, committed or rolled back."""
        seqs = list(range(self.seq, self.seq + len(keys)))
        self.seq += len(keys)

        async def run() -> None:
            async with Transaction(self.bus, self.store) as tx:
                for seq, key in zip(seqs, keys, strict=True):
                    await tx.publish(self.topic, Step(key, seq), key=key)
                if not commit:
                    raise Crash("rolled back")

        try:
            self.call(run)
        except Crash:
            return
        self.committed.update(zip(seqs, keys, strict=True))

    @rule(
        i=st.sampled_from(RELAYS),
        action=st.sampled_from(["claim", "send", "finish", "crash"]),
        n=st.integers(1, 6),
    )
    def relay(self, i: int, action: str, n: int) -> None:
        """Relay ``i`` claims up to ``n`` rows (if it holds none), sends the next ``n``
        of its claim (in order per key), sends the rest and records the round, or dies
        wherever it is (rows held, some sent, none recorded; a new relay takes its place)."""
        slot = self.slots[i]
        if action == "claim" and slot.rows is None:
            self.call(self._claim, slot, n)
        elif action == "send":
            self.call(self._send, slot, n)
        elif action == "finish":
            self.call(self._finish, slot)
        elif action == "crash":
            self.dead_owners.append(slot.relay.owner)
            self.slots[i] = _Slot(self.call(self._new_relay))

    async def _claim(self, slot: _Slot, limit: int) -> None:
        slot.rows = await self.store.claim(slot.relay.owner, limit, LEASE)

    async def _send(self, slot: _Slot, n: int) -> None:
        if slot.rows is None:
            return
        batch, slot.next = slot.rows[slot.next : slot.next + n], slot.next + n
        done = await slot.relay._send(batch, time.monotonic() + LEASE / 2)
        slot.done.sent += done.sent
        slot.done.dead += done.dead
        slot.done.released += done.released

    async def _finish(self, slot: _Slot) -> None:
        if slot.rows is None:
            return
        await self._send(slot, len(slot.rows))
        await slot.relay._finish(slot.done)
        slot.reset()

    @rule()
    def dead_leases_run_out(self) -> None:
        if self.dead_owners:
            self.call(self._expire)

    async def _expire(self) -> None:
        past = "now() - interval '1 hour'" if self.pg else "0"
        owners = ", ".join(f"'{o}'" for o in self.dead_owners)
        await self._sql(
            f"UPDATE bus_outbox SET lease_until = {past} WHERE lease_owner IN ({owners}) "
            "RETURNING id"
        )

    @rule(outcome=st.sampled_from(["ack", "crash_mid_tx", "crash_after_commit"]))
    def deliver(self, outcome: str) -> None:
        """One delivery to the idempotent handler, which ends as ``outcome``."""
        self.call(self._deliver, outcome)

    async def _deliver(self, outcome: str) -> bool:
        delivery = self.consumer.poll()  # type: ignore[attr-defined]
        if delivery is None:
            return False
        message = delivery.message
        ctx = Context(self.bus, message, self.topic, "model", delivery.redeliveries + 1)
        self.crash_mid_tx = outcome == "crash_mid_tx"
        try:
            await self.handler(msgspec.json.decode(message.body, type=Step), ctx)
        except Crash:
            await delivery.give_back()  # the broker sees the consumer die: redelivered
            return True
        if outcome == "crash_after_commit":
            await delivery.give_back()  # committed, but the ack never left
        else:
            await delivery.ack()
        return True

    # -- what holds at every step -------------------------------------------------------

    @invariant()
    def nothing_took_effect_twice_and_nothing_rolled_back_exists(self) -> None:
        effects = [seq for (seq,) in self.call(self._sql, "SELECT seq FROM effects")]
        assert len(effects) == len(set(effects)), f"a message took effect twice: {effects}"
        assert set(effects) <= set(self.committed)

    # -- after the last step ------------------------------------------------------------

    def teardown(self) -> None:
        try:
            self.call(self._drain_and_check)
        finally:
            self.call(self._close)

    async def _drain_and_check(self) -> None:
        for _ in range(100):
            if self.dead_owners:
                await self._expire()
            sent = sum(slot.relay.sent for slot in self.slots)
            for slot in self.slots:
                if slot.rows is None:
                    await self._claim(slot, self.store.options.batch)
                await self._finish(slot)
            progressed = sum(slot.relay.sent for slot in self.slots) > sent
            while await self._deliver("ack"):
                progressed = True
            if not progressed:
                break
        else:
            raise AssertionError("the outbox and the broker never drained")
        effects = sorted(seq for (seq,) in await self._sql("SELECT seq FROM effects"))
        assert effects == sorted(self.committed), "every committed message took effect once"
        sent = await _drain(self.observer)
        assert {seq for seq, _ in sent} == set(self.committed), "nothing rolled back was sent"
        firsts: dict[str, list[int]] = {}
        for seq in dict.fromkeys(seq for seq, _ in sent):
            firsts.setdefault(self.committed[seq], []).append(seq)
        for key, seqs in firsts.items():
            assert seqs == sorted(seqs), f"key {key} first reached the broker out of order"
        ids: dict[int, set[str]] = {}
        for seq, message_id in await _drain(self.echoes):
            ids.setdefault(seq, set()).add(message_id)
        assert set(ids) == set(self.committed), "every handler's publish reached the broker"
        assert all(len(v) == 1 for v in ids.values()), f"published once in effect: {ids}"
        assert (await self._sql("SELECT count(*) FROM bus_outbox"))[0][0] == 0
        assert (await self._sql("SELECT count(*) FROM bus_inbox"))[0][0] == len(self.committed)


async def _drain(consumer: Any) -> list[tuple[int, str]]:
    """Every copy the broker holds for this group, in order: (seq, message id)."""
    out = []
    while (delivery := consumer.poll()) is not None:
        out.append((msgspec.json.decode(delivery.message.body, type=Step).seq, delivery.message.id))
        await delivery.ack()
    return out


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as p:
        yield p


def _run(portal: BlockingPortal, make_url: Any, examples: int) -> None:
    OutboxInboxModel.portal = portal
    OutboxInboxModel.make_url = staticmethod(make_url)
    run_state_machine_as_test(
        OutboxInboxModel,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            derandomize=True,  # the same interleavings every run: no flake under load
            database=None,
        ),
    )


def test_model_on_sqlite(portal: BlockingPortal) -> None:
    _run(portal, lambda: "sqlite://", examples=80)  # in memory: a new database each time


def test_model_on_postgres(portal: BlockingPortal, pg_database: str) -> None:
    def make_url() -> str:
        return str(portal.call(new_schema, pg_database)) + "&pool_max=2"

    _run(portal, make_url, examples=12)
