"""The bus a TestBus runs: a ``bus.Bus`` that records what is published through it and
honours armed faults, and the users' services with each handler wrapped to record its
calls (and to fail, or lose its delivery, when a fault says so).

Handlers speak through the bus that runs them (``ctx.publish`` calls ``Bus.publish``),
so overriding the public methods here sees every message a handler sends, with no
change to the core. Messages published in a transaction reach the broker through the
bus's outbox relay, which sends through ``Bus._send_relayed``: overriding it records
them once they are sent.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from bus import codec
from bus.bus import Bus, _type_name
from bus.clock import Clock
from bus.context import Context
from bus.errors import PublishError, RequestTimeout
from bus.message import CAUSATION_ID, PAYLOAD_TYPE, Message
from bus.service import Service, Subscription
from bus.testing.faults import Faults
from bus.testing.record import Recorder, Sent, current_call

T = TypeVar("T")
Lose = Callable[[str, str, str], bool]


class RecordingBus(Bus):
    """A Bus that records every publish (the test's and its handlers') and injects the
    publish and request faults armed on its TestBus."""

    def __init__(
        self,
        url: str,
        *,
        services: Iterable[Service],
        recorder: Recorder,
        faults: Faults,
        clock: Clock,
        **options: Any,
    ) -> None:
        super().__init__(url, services=services, clock=clock, **options)
        self._recorder = recorder
        self._faults = faults

    def _record(
        self,
        topic: str,
        payload: object,
        message_id: str,
        key: str | None,
        headers: Mapping[str, str] | None,
        count: bool = True,
    ) -> None:
        recorded = dict(headers or {})
        recorded[PAYLOAD_TYPE] = _type_name(type(payload))
        sent = Sent(
            seq=len(self._recorder.sent) + 1,
            topic=topic,
            message_id=message_id,
            body=codec.encode(payload, self.content_type),
            content_type=self.content_type,
            headers=recorded,
            key=key,
            payload_type=type(payload),
            by=current_call.get(),
        )
        if count:
            self._recorder.published(sent)
        else:
            self._recorder.sent.append(sent)
        self._recorder.activity += 1

    async def _send_relayed(self, topic: str, message: Message) -> None:
        await super()._send_relayed(topic, message)
        rec = self._recorder
        headers = dict(message.headers)
        sent = Sent(
            seq=len(rec.sent) + 1,
            topic=topic,
            message_id=message.id,
            body=message.body,
            content_type=message.content_type or self.content_type,
            headers=headers,
            key=message.key,
            payload_type=rec.payload_type(topic, headers.get(PAYLOAD_TYPE, "")),
            by=rec.call_of(headers.get(CAUSATION_ID)),
            relayed=True,
        )
        rec.published(sent)
        rec.activity += 1

    def _publish_fault(self, topic: str) -> None:
        if self._faults.take(self._faults.publish, topic) is not None:
            raise PublishError(
                f"the broker did not take a message to {topic!r} "
                f"(a fault armed by TestBus.fail_publish({topic!r}))"
            )

    async def publish(
        self,
        topic: str,
        payload: object,
        *,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> str:
        self._publish_fault(topic)
        message_id = await super().publish(
            topic, payload, key=key, headers=headers, correlation_id=correlation_id
        )
        self._record(topic, payload, message_id, key, headers)
        return message_id

    async def publish_many(
        self,
        topic: str,
        payloads: Iterable[object],
        *,
        key: str | Callable[[Any], str | None] | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> list[str]:
        self._publish_fault(topic)
        items = list(payloads)
        ids = await super().publish_many(
            topic, items, key=key, headers=headers, correlation_id=correlation_id
        )
        for payload, message_id in zip(items, ids, strict=True):
            message_key = key(payload) if callable(key) else key
            self._record(topic, payload, message_id, message_key, headers)
        return ids

    async def request(
        self,
        topic: str,
        payload: object,
        *,
        response: type[T],
        timeout: float = 5.0,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
    ) -> T:
        call = current_call.get()
        if call is not None:  # the call waits on the bus: the clock may move meanwhile
            call.waiting += 1
        try:
            self._record(topic, payload, "", key, headers, count=False)
            if self._faults.take(self._faults.request, topic) is not None:
                await self.clock.sleep(timeout)
                raise RequestTimeout(
                    f"no reply on {topic!r} within {timeout}s "
                    f"(a fault armed by TestBus.time_out_requests({topic!r}))"
                )
            return await super().request(
                topic,
                payload,
                response=response,
                timeout=timeout,
                key=key,
                headers=headers,
                correlation_id=correlation_id,
            )
        finally:
            if call is not None:
                call.waiting -= 1
                self._recorder.activity += 1


def wrap_services(
    services: Iterable[Service],
    recorder: Recorder,
    faults: Faults,
    clock: Clock,
    lose: Lose | None,
) -> list[Service]:
    """Copies of ``services`` whose handlers record their calls and honour faults; the
    originals are left as they are."""
    out = []
    for service in services:
        if not isinstance(service, Service):
            raise TypeError(f"services must be bus.Service objects, got {service!r}")
        clone = Service(service.name)
        for sub in service.subscriptions:
            recorder.subscribe(sub)
            handler = _recording(sub, recorder, faults, clock, lose)
            clone.subscriptions.append(
                dataclasses.replace(sub, handler=handler, wants_context=True)
            )
        out.append(clone)
    return out


def _recording(
    sub: Subscription, recorder: Recorder, faults: Faults, clock: Clock, lose: Lose | None
) -> Callable[[Any, Context], Any]:
    handler = sub.handler
    wants_context = sub.wants_context

    async def recording(payload: Any, ctx: Context) -> Any:
        call = recorder.begin(sub, ctx.message_id, ctx.attempt, payload, clock.monotonic())
        token = current_call.set(call)
        lost = False
        try:
            armed = faults.take(faults.handler, sub.topic, sub.group)
            if armed is not None:
                raise _error(armed.error, sub, call.attempt)
            if lose is not None and faults.take(faults.drop, sub.topic, sub.group) is not None:
                # The consumer dies while the handler runs: the broker hands the message
                # out again at once, and whatever this run settles goes nowhere.
                lost = call.lost = lose(sub.topic, sub.group, ctx.message_id)
            result = await (handler(payload, ctx) if wants_context else handler(payload))
        except BaseException as exc:
            recorder.end(sub, call, exc, clock.monotonic(), lost)
            raise
        finally:
            current_call.reset(token)
        recorder.end(sub, call, None, clock.monotonic(), lost)
        return result

    functools.update_wrapper(recording, handler)
    return recording


def _error(
    error: BaseException | type[BaseException] | None, sub: Subscription, attempt: int
) -> BaseException:
    text = f"fault armed by TestBus.fail({sub.topic!r}): call {attempt} of {sub.name}"
    if error is None:
        return RuntimeError(text)
    if isinstance(error, type):
        return error(text)
    return error


__all__ = ["RecordingBus", "wrap_services"]
