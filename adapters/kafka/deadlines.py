"""One timer for every send awaiting its broker confirmation, not one per send.

A send's confirmation is a future aiokafka resolves when the broker answers. An
idempotent producer retries an unanswered batch without end, so a deadline must come
from outside: futures still unresolved ``timeout`` seconds after they were watched fail
with KafkaTimeoutError. A per-send ``asyncio.timeout`` cost ~10 us of CPU a publish
(about a third of a raw aiokafka publish on this machine); watching is an append, and one
task sleeps until the oldest deadline. Futures resolve about in the order they were
sent, so the queue is swept from its head. (aiokafka skips futures already resolved
when the batch completes later.)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

from aiokafka.errors import KafkaTimeoutError


class Deadlines:
    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._watched: deque[tuple[float, asyncio.Future[object]]] = deque()
        self._task: asyncio.Task[None] | None = None

    def watch(self, future: asyncio.Future[object]) -> None:
        if future.done():
            return
        watched = self._watched
        while watched and watched[0][1].done():  # keeps the queue short while all is well
            watched.popleft()
        loop = future.get_loop()  # the future's own: no look-up of the running loop
        watched.append((loop.time() + self._timeout, future))
        if self._task is None:
            self._task = loop.create_task(self._expire())

    async def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        watched = self._watched
        while True:
            while watched and watched[0][1].done():
                watched.popleft()
            if not watched:
                # Anything watched from now on is due a full timeout from now, or later.
                await asyncio.sleep(self._timeout)
                continue
            due, future = watched[0]
            now = loop.time()
            if due > now:
                await asyncio.sleep(due - now)
                continue
            watched.popleft()
            future.set_exception(KafkaTimeoutError(f"not confirmed within {self._timeout:g} s"))

    async def close(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watched.clear()
