"""The scalability suite behind ``python -m benchmarks``: every scenario runs the bus and
the raw client (and, with ``--peers``, FastStream) doing the same work in one run.

cli: arguments and output; runner: the loop over adapters and scenarios; scenarios: what
is measured; plan: how big; sides_bus, sides_memory, sides_rabbit, sides_kafka,
sides_faststream: one implementation of the same operations per side; drive: publishing
windows, fixed rates, calls in flight, retry in place; track: the consume gate and
latency samples; procs and worker: consumer processes; brokers: tansu, RabbitMQ, names
and clean-up; model: payload, handlers, Result; report, plots, progress: the output.
"""
