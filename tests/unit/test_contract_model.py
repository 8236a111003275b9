"""A stateful property test of the delivery contract on the embedded broker.

Hypothesis publishes, makes handlers fail, adds members, crashes them mid-handler and
closes them gracefully, in any order; at the end every message must have been handled
or dead-lettered (never lost), and no two members of the group may ever have handled one
message at the same time.
"""

from __future__ import annotations

import itertools
import uuid

import anyio
import msgspec
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import bus
from tests.conformance.helpers import Item

POLICY = bus.Retry(attempts=3, backoff=0.001, max_backoff=0.005)


class DeliveryContract(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal: BlockingPortal = self._portal_cm.__enter__()
        self.url = f"memory://model-{uuid.uuid4().hex[:8]}"
        self.topic, self.group = "model.topic", "model-group"
        self.ids = itertools.count()
        self.failures_planned: dict[int, int] = {}
        self.calls: dict[int, int] = {}
        self.handled: set[int] = set()
        self.in_flight: set[int] = set()
        self.overlaps: list[int] = []
        self.service = self._service()
        self.members: list[bus.Bus] = []
        self.publisher = bus.Bus(self.url)
        self.portal.call(self.publisher.start)
        self.add_member()

    def _service(self) -> bus.Service:
        svc = bus.Service(self.group)

        @svc.subscribe(self.topic, retry=POLICY, concurrency=4)
        async def handle(item: Item) -> None:
            n = item.n
            if n in self.in_flight:
                self.overlaps.append(n)
            self.in_flight.add(n)
            try:
                self.calls[n] = self.calls.get(n, 0) + 1
                await anyio.sleep(0.001 * (n % 3))
                if self.calls[n] <= self.failures_planned[n]:
                    raise ValueError(f"planned failure {self.calls[n]} of {n}")
                self.handled.add(n)
            finally:
                self.in_flight.discard(n)

        return svc

    @rule(failures=st.integers(0, 4), count=st.integers(1, 5))
    def publish(self, failures: int, count: int) -> None:
        for _ in range(count):
            n = next(self.ids)
            self.failures_planned[n] = failures
            self.portal.call(self.publisher.publish, self.topic, Item(n))

    @precondition(lambda self: len(self.members) < 3)
    @rule()
    def add_member(self) -> None:
        member = bus.Bus(self.url, services=[self.service], close_timeout=0.05)
        self.portal.call(member.start)
        self.members.append(member)

    @precondition(lambda self: self.members)
    @rule(index=st.integers(0, 2))
    def crash_member(self, index: int) -> None:
        member = self.members.pop(index % len(self.members))
        self.portal.call(member.close, 0.0)  # handlers cancelled mid-flight, nothing acked

    @precondition(lambda self: self.members)
    @rule(index=st.integers(0, 2))
    def close_member(self, index: int) -> None:
        member = self.members.pop(index % len(self.members))
        self.portal.call(member.close)

    @rule()
    def let_time_pass(self) -> None:
        self.portal.call(anyio.sleep, 0.005)

    @invariant()
    def never_handled_concurrently_by_two_members(self) -> None:
        assert not self.overlaps, f"handled concurrently: {self.overlaps}"

    def teardown(self) -> None:
        try:
            if not self.members:
                self.add_member()
            published = set(self.failures_planned)

            async def settle() -> None:
                with anyio.fail_after(20):
                    while True:
                        dead = {
                            _n(d.body)
                            async for d in self.publisher.dead_letters(self.topic, group=self.group)
                        }
                        if published <= self.handled | dead:
                            return
                        await anyio.sleep(0.005)

            self.portal.call(settle)
            assert not self.overlaps
        finally:
            for member in self.members:
                self.portal.call(member.close)
            self.portal.call(self.publisher.close)
            self._portal_cm.__exit__(None, None, None)


def _n(body: bytes) -> int:
    return msgspec.json.decode(body, type=Item).n


DeliveryContract.TestCase.settings = settings(
    max_examples=30, stateful_step_count=15, deadline=None
)
TestDeliveryContract = DeliveryContract.TestCase
