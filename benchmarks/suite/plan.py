"""How big each scenario runs, per adapter, and how many rounds: the full run and
``--quick``."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Plan:
    rounds: int  # per point: every side once a round, interleaved, alternating who starts
    size: int  # message size (JSON bytes) for every scenario but the size sweep
    sizes: tuple[int, ...]  # the ``sizes`` scenario
    publish_n: dict[str, int]
    callers: int  # concurrent callers each awaiting one publish at a time
    batch: int  # messages per publish_many / raw batch
    consume_n: dict[str, int]
    concurrencies: dict[str, tuple[int, ...]]
    concurrency_per_level: int  # messages per unit of concurrency...
    concurrency_cap: dict[str, int]  # ...up to this many
    concurrency_min: int  # ...and at least this many
    processes: tuple[int, ...]
    processes_n: dict[str, int]
    partitions: tuple[int, ...]
    partitions_n: int
    topics: dict[str, tuple[int, ...]]
    topics_n: dict[str, int]
    latency_rate: dict[str, float]
    latency_n: dict[str, int]
    rr_in_flight: tuple[int, ...]
    rr_n: dict[str, dict[int, int]]
    failing_n: dict[str, int]
    telemetry_n: dict[str, int]
    outbox_n: int  # outbox (RabbitMQ only): messages a side publishes or consumes...
    outbox_producers: int  # ...publishing from this many tasks, a key each
    outbox_paced_n: int  # one task paced at outbox_paced_rate msg/s: latency alone
    outbox_paced_rate: float
    outbox_concurrency: int  # the inbox rows' handler concurrency
    fail_every: int = 10

    def with_rounds(self, rounds: int | None) -> Plan:
        return self if rounds is None else replace(self, rounds=rounds)


ALL = ("memory", "rabbitmq", "kafka")

FULL = Plan(
    rounds=5,
    size=256,
    sizes=(64, 1024, 16384),
    # Sized so that most windows last 0.3 s or more on this 2-core machine; memory stays
    # under the embedded broker's max_queue (100,000).
    publish_n={"memory": 50_000, "rabbitmq": 4_000, "kafka": 30_000},
    callers=100,
    batch=100,
    consume_n={"memory": 50_000, "rabbitmq": 5_000, "kafka": 50_000},
    concurrencies={
        "memory": (1, 16, 64),
        "rabbitmq": (1, 2, 4, 8, 16, 32, 64),
        "kafka": (1, 16, 64),
    },
    concurrency_per_level=100,
    concurrency_cap={"memory": 20_000, "rabbitmq": 4_000, "kafka": 6_000},
    concurrency_min=300,
    processes=(1, 2),
    processes_n={"rabbitmq": 15_000, "kafka": 30_000},
    partitions=(1, 4, 16),
    partitions_n=5_000,
    topics={"memory": (1, 10, 100, 1000), "rabbitmq": (1, 10, 100, 1000), "kafka": (1, 10, 100)},
    topics_n={"memory": 20_000, "rabbitmq": 10_000, "kafka": 6_000},
    latency_rate={"memory": 2_000.0, "rabbitmq": 1_000.0, "kafka": 500.0},
    latency_n={"memory": 10_000, "rabbitmq": 5_000, "kafka": 2_500},
    rr_in_flight=(1, 32),
    rr_n={
        "memory": {1: 20_000, 32: 50_000},
        "rabbitmq": {1: 1_000, 32: 5_000},
        "kafka": {1: 300, 32: 3_000},
    },
    failing_n={"memory": 5_000, "rabbitmq": 3_000, "kafka": 3_000},
    # RabbitMQ: 3 s a run or so; at 4,000 (under 1 s) a broker hiccup moved a round by 20%.
    telemetry_n={"memory": 20_000, "rabbitmq": 15_000, "kafka": 10_000},
    # As tests/store/bench_outbox.py ran them (issue 14) before it was folded in here.
    outbox_n=3_000,
    outbox_producers=16,
    outbox_paced_n=200,
    outbox_paced_rate=100.0,
    outbox_concurrency=16,
)

QUICK = Plan(
    rounds=1,
    size=256,
    sizes=(64, 16384),
    publish_n={"memory": 1_000, "rabbitmq": 300, "kafka": 300},
    callers=100,
    batch=100,
    consume_n={"memory": 1_000, "rabbitmq": 300, "kafka": 300},
    concurrencies={"memory": (1, 16), "rabbitmq": (1, 16), "kafka": (1, 16)},
    concurrency_per_level=20,
    concurrency_cap={"memory": 1_000, "rabbitmq": 300, "kafka": 300},
    concurrency_min=50,
    processes=(1,),
    processes_n={"rabbitmq": 200, "kafka": 200},
    partitions=(1, 4),
    partitions_n=200,
    topics={"memory": (1, 100), "rabbitmq": (1, 4), "kafka": (1, 4)},
    topics_n={"memory": 1_000, "rabbitmq": 300, "kafka": 200},
    latency_rate={"memory": 1_000.0, "rabbitmq": 500.0, "kafka": 500.0},
    latency_n={"memory": 200, "rabbitmq": 100, "kafka": 100},
    rr_in_flight=(1, 32),
    rr_n={"memory": {1: 200, 32: 500}, "rabbitmq": {1: 50, 32: 200}, "kafka": {1: 20, 32: 100}},
    failing_n={"memory": 300, "rabbitmq": 200, "kafka": 200},
    telemetry_n={"memory": 1_000, "rabbitmq": 200, "kafka": 200},
    outbox_n=200,
    outbox_producers=16,
    outbox_paced_n=30,
    outbox_paced_rate=100.0,
    outbox_concurrency=16,
)
