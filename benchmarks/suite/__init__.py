"""The one benchmark harness behind ``python -m benchmarks``: every scenario runs the bus
and the raw client (and, with ``--peers``, FastStream) doing the same work, in rounds
that interleave the sides and rotate which goes first; results are medians of the
per-round ratios with their spread.

cli: arguments and output; runner: the loop over adapters and scenarios; scenarios: what
is measured and the rounds; plan: how big; sides_bus, sides_memory, sides_rabbit,
sides_kafka, sides_faststream: one implementation of the same operations per side;
sides_outbox: the outbox scenario's database and exchange, and its asyncpg outbox;
telemetry: the SDK-on/off runs, each in a child process; drive: calls in flight,
batches, fixed rates, retry in place; track: the consume gate and latency samples; procs
and worker: consumer processes; brokers: tansu, RabbitMQ, names and clean-up; model:
payload, handlers, Result; report, plots, progress: the output; profiling: --profile.
"""
