"""tansu killed (``kill -9``) and started again on the same port under a running bus.

Its memory storage loses everything it held: topics, records, committed offsets, groups.
It is killed mid-stream, so what it held and had not delivered dies with it (counted,
not asserted). What must hold: a publish while it is down raises PublishError within
publish_timeout_ms; once it is back the bus needs no restart: the publisher makes its
topic again, the consumer (dropped from the group the broker forgot) commits none of its
old positions over the new, empty log, makes its topics again and rejoins, and every
message published after the restart is delivered, retries and dead letters included.

The broker stays down longer than two publish timeouts: a record the client still
retries would otherwise reach the new broker first, and tansu 0.6 makes a topic on such
a send with a log it never serves (the last test measures that).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

import anyio
import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

import bus
from tests.brokers.kafka import OPTIONS, tansu_or_fail

pytestmark = pytest.mark.slow

PUBLISH_TIMEOUT_MS = 1500
OUTAGE = 3.2  # seconds down: more than two publish timeouts (see the module)
BEFORE, AFTER = 150, 300


class Job(msgspec.Struct):
    n: int
    fail_once: bool = False
    reject: bool = False


async def test_restarted_tansu_loses_its_data_and_the_bus_goes_on() -> None:
    tag = uuid.uuid4().hex[:8]
    topic, group = f"restart.{tag}", f"g-{tag}"
    delivered: Counter[int] = Counter()
    first_after: list[float] = []
    service = bus.Service(group)

    @service.subscribe(topic, concurrency=4, retry=bus.Retry(attempts=3, backoff=0.05))
    async def handle(job: Job, ctx: bus.Context) -> None:
        if job.reject:
            raise bus.Reject("refused on purpose")
        if job.fail_once and ctx.attempt == 1:
            raise RuntimeError("fails once: goes through the retry topic")
        if job.n >= BEFORE and not first_after:
            first_after.append(time.monotonic())
        delivered[job.n] += 1
        await anyio.sleep(0.005)  # a stream still flowing when the broker dies

    def job(n: int) -> Job:
        return Job(n, fail_once=n % 10 == 3, reject=n == BEFORE + 77)

    with tansu_or_fail() as broker:
        url = broker.url(f"{OPTIONS}&publish_timeout_ms={PUBLISH_TIMEOUT_MS}")
        async with bus.Bus(url, services=[service]), bus.Bus(url) as publisher:
            for n in range(BEFORE):
                await publisher.publish(topic, job(n), key=str(n % 7))
            with anyio.fail_after(30):  # killed mid-stream, with settled offsets not committed
                while len(delivered) < BEFORE // 2:
                    await anyio.sleep(0.001)

            broker.kill()
            delivered_before = len(delivered)
            killed = time.monotonic()
            outage: list[float] = []
            while time.monotonic() - killed < OUTAGE - PUBLISH_TIMEOUT_MS / 1000:
                started = time.monotonic()
                with pytest.raises(bus.PublishError):
                    await publisher.publish(topic, Job(-1))
                outage.append(time.monotonic() - started)
            await anyio.sleep(max(0.0, OUTAGE - (time.monotonic() - killed)))
            broker.start()
            broker.wait_ready()
            back = time.monotonic()

            published: list[int] = []
            failed = 0
            with anyio.fail_after(60):
                for n in range(BEFORE, BEFORE + AFTER):
                    while True:  # a publish refused while the broker settles is sent again
                        try:
                            await publisher.publish(topic, job(n), key=str(n % 7))
                            break
                        except bus.PublishError:
                            failed += 1
                            await anyio.sleep(0.1)
                    published.append(n)
            expected = {n for n in published if not job(n).reject}
            with anyio.fail_after(60):
                while not expected <= delivered.keys():
                    await anyio.sleep(0.02)
            recovered = first_after[0] - back
            letters = [letter async for letter in publisher.dead_letters(topic, group=group)]

    lost = expected - delivered.keys()
    duplicated = sum(count - 1 for n, count in delivered.items() if n >= BEFORE)
    print(
        f"\ntansu restart: killed with {delivered_before} of {BEFORE} delivered (the rest "
        f"died with the broker: {BEFORE - len(delivered.keys() & set(range(BEFORE)))}); "
        f"outage publishes {len(outage)} raised PublishError in "
        f"{min(outage):.2f}-{max(outage):.2f} s; after restart published {len(published)} "
        f"(publish retried {failed}), delivered {len(expected & delivered.keys())}, "
        f"lost {len(lost)}, duplicated {duplicated}, dead letters {len(letters)}, "
        f"first delivery {recovered:.2f} s after the broker was back"
    )
    assert outage, "a publish was tried while the broker was down"
    assert max(outage) < PUBLISH_TIMEOUT_MS / 1000 + 3, "bounded by publish_timeout_ms"
    assert not lost, f"lost after the restart: {sorted(lost)[:20]}"
    assert len(published) == AFTER
    assert [letter.reason for letter in letters] == ["rejected"], (
        "the dead letter after the restart, and none from before (the broker lost them)"
    )


@pytest.mark.tansu
async def test_tansu_serves_nothing_of_a_topic_a_retried_send_made_after_a_restart() -> None:
    """tansu 0.6: a Produce that reaches a restarted broker before anything else names its
    topic makes the topic, takes the record (an offset is returned, the end offset
    counts it) and never serves it: fetches see a high watermark of 0. Apache Kafka
    either refuses (no auto-creation) or serves it. Hence the bus makes a topic again
    before its next send once a send failed, and the test above keeps tansu down until
    the client has dropped what it was retrying."""
    with tansu_or_fail() as broker:
        servers = broker.bootstrap
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        producer = AIOKafkaProducer(bootstrap_servers=servers, request_timeout_ms=10000)
        reader = AIOKafkaConsumer(bootstrap_servers=servers, fetch_max_wait_ms=20)
        await admin.start()
        await producer.start()
        try:
            await admin.create_topics([NewTopic("lost", 1, 1)])
            await producer.send_and_wait("lost", b"before", partition=0)
            broker.kill()
            pending = await producer.send("lost", b"retried", partition=0)
            await anyio.sleep(0.5)  # the client retries it while the broker is down
            broker.start()
            broker.wait_ready()
            with anyio.fail_after(20):
                taken = await pending
            assert taken.offset == 0, "the new broker took it, at the start of a new log"
            await reader.start()
            tp = TopicPartition("lost", 0)
            reader.assign([tp])
            reader.seek(tp, 0)
            assert (await reader.end_offsets([tp]))[tp] == 1
            assert await reader.getmany(timeout_ms=1000) == {}  # Apache Kafka: the record
        finally:
            await reader.stop()
            await producer.stop()
            await admin.close()
