"""Records a member keeps in memory until they are due.

A record of the retry topic waits until the due time its producer wrote in it (a retry
must block no other record, so it waits here, not in the partition); while as many as
``read_ahead`` wait, the retry topic is paused. A record given back again and again
(settling it keeps failing) waits a growing pause before it is handed out again, first
in line, so a lasting fault does not spin its handler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from adapters.kafka.partition import Item, Partition
from adapters.kafka.pauses import Pauses
from adapters.kafka.readahead import ReadAhead


class Timers:
    def __init__(self, ahead: ReadAhead, pauses: Pauses, limit: int) -> None:
        self._ahead = ahead
        self._pauses = pauses
        self._limit = limit
        self._low_water = limit // 2
        self._retries = 0  # retry records waiting

    def retry(self, item: Item, delay: float) -> None:
        """Hand ``item`` (of the retry topic) out after ``delay`` seconds."""
        self._hold(item, delay, retry=True)
        self._retries += 1
        if self._retries >= self._limit and not self._pauses.retries:
            self._pauses.set(retries=True)

    def given_back(self, item: Item, delay: float) -> None:
        """Hand ``item`` out again, first in line, after ``delay`` seconds."""
        self._hold(item, delay, retry=False)

    def _hold(self, item: Item, delay: float, *, retry: bool) -> None:
        part, offset = item[0], item[1]
        loop = asyncio.get_running_loop()
        part.timers[offset] = (loop.call_later(delay, self._release, item, retry), retry)

    def _release(self, item: Item, retry: bool) -> None:
        part, offset = item[0], item[1]
        part.timers.pop(offset, None)
        if not retry:
            self._ahead.put_back(item)
            return
        self._retries -= 1
        self._ahead.append(item)
        self._ahead.wake(1)
        if self._pauses.retries and self._retries <= self._low_water:
            self._pauses.set(retries=False)

    def drop(self, parts: Iterable[Partition]) -> None:
        """Forget what waits for ``parts`` (revoked, or closing): unsettled, so the
        next owner reads it again."""
        for part in parts:
            for handle, retry in part.timers.values():
                handle.cancel()
                self._retries -= retry
            part.timers.clear()
        if self._pauses.retries and self._retries <= self._low_water:
            self._pauses.set(retries=False)
