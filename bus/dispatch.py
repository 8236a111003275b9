"""Runs one subscription: a fixed pool of workers pulling from one Consumer.

A pool of ``concurrency`` workers (rather than a task per message) bounds in-flight
handlers and spends nothing per message on spawning. Each delivery goes down one path,
``handle`` (bus/handling.py, with telemetry wrapped around it when an SDK is installed),
which never raises for a message: a worker never dies on one. Closing stops the intake
first; handlers already running finish (up to the bus's deadline) and settle; what was
never started stays unsettled, so the adapter gives it back to the group.
"""

from __future__ import annotations

import asyncio
import logging

import anyio
import tenacity

from bus.dead_letter import type_name
from bus.handling import Handle, Handling
from bus.observed import Observed
from bus.service import Subscription
from bus.transport import Consumer, Delivery

log = logging.getLogger("bus.dispatch")

# An adapter that fails to hand out a message (it reconnects by itself) is asked again on
# this schedule: quickly at first, then every few seconds, with jitter so the workers of
# a pool do not ask in step.
_INTAKE_WAIT = tenacity.wait_exponential(multiplier=0.1, max=5.0) + tenacity.wait_random(0, 0.1)


class Runner:
    """The workers of one subscription."""

    def __init__(self, sub: Subscription, consumer: Consumer, handle: Handle) -> None:
        self._sub = sub
        self._consumer = consumer
        self._handle = handle
        self._stopping = False
        self._intakes: set[anyio.CancelScope] = set()
        self._workers: anyio.CancelScope | None = None
        self.done = anyio.Event()

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._workers = tg.cancel_scope
                for _ in range(self._sub.concurrency):
                    tg.start_soon(self._worker)
        finally:
            self.done.set()

    def stop_intake(self) -> None:
        """Take no new message; handlers already running go on."""
        self._stopping = True
        for scope in self._intakes:
            scope.cancel()

    def abandon(self) -> None:
        """Cancel running handlers: their messages stay unsettled and are redelivered."""
        self.stop_intake()
        if self._workers is not None:
            self._workers.cancel()

    async def _worker(self) -> None:
        consumer = self._consumer
        handle = self._handle
        # The common case is run here, the handler awaited by the worker itself rather
        # than inside a coroutine of the path's per message (a sixth of the Kafka
        # consume path's time): ``begin`` gives the handler's awaitable, or None for
        # the whole path. With telemetry, the same for messages the SDK does not sample.
        handling = handle if isinstance(handle, Handling) else None
        observed = handle if isinstance(handle, Observed) else None
        poll = getattr(consumer, "poll", None)
        polled = 0
        while not self._stopping:
            if poll is not None:
                ready: Delivery | None = poll()
                if ready is not None:
                    try:  # zero-cost unless raised
                        if handling is not None:
                            step = handling.begin(ready)
                            if step is None:
                                await handle(ready)
                            else:
                                try:
                                    await step
                                except (asyncio.CancelledError, Exception) as exc:
                                    await handling.failed(ready, exc)
                                else:
                                    if not ready.ack_nowait():
                                        await handling.handled(ready)
                        elif observed is not None:
                            begun = observed.begin(ready)
                            if begun is None:
                                await handle(ready)
                            else:
                                step, token = begun
                                try:
                                    await step
                                except (asyncio.CancelledError, Exception) as exc:
                                    await observed.failed(ready, exc, token)
                                else:
                                    if ready.ack_nowait():
                                        observed.acked(token)
                                    else:
                                        await observed.handled(ready, token)
                        else:
                            await handle(ready)
                    except Exception:
                        await self._bug(ready)
                    polled += 1
                    if polled % 32 == 0:  # a busy queue must not starve the event loop
                        # What anyio's checkpoint does on asyncio, without its per-call
                        # look-up of the running library (~1% of Kafka consume).
                        await asyncio.sleep(0)
                    continue
            delivery = await self._take()
            if delivery is None:
                return
            try:
                await handle(delivery)  # the whole path: a worker that waited is not hot
            except Exception:
                await self._bug(delivery)

    async def _bug(self, delivery: Delivery) -> None:
        """The handling path raised, which it never should: keep the worker, give the
        message back."""
        log.exception("handling message %s failed; giving it back", delivery.message.id)
        with anyio.move_on_after(5.0):
            try:
                await delivery.give_back()
            except Exception as exc:
                log.error("could not give message %s back: %s", delivery.message.id, exc)

    async def _take(self) -> Delivery | None:
        """The next delivery; None once the consumer or the intake is closed."""
        failures = 0
        while not self._stopping:
            with anyio.CancelScope() as intake:
                self._intakes.add(intake)
                try:
                    return await self._consumer.__anext__()
                except StopAsyncIteration:
                    return None
                except Exception as exc:
                    # Adapters reconnect by themselves; one that gives up must not take
                    # the other subscriptions down with it. Ask again after a pause.
                    failures += 1
                    log.error(
                        "consuming %s for group %s failed (%s: %s); retrying",
                        self._sub.topic, self._sub.group, type_name(exc), exc,
                        extra={"topic": self._sub.topic, "group": self._sub.group},
                    )  # fmt: skip
                    await anyio.sleep(_pause(failures))
                finally:
                    self._intakes.discard(intake)
            if intake.cancel_called:
                return None
        return None


def _pause(failures: int) -> float:
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = failures
    return float(_INTAKE_WAIT(state))
