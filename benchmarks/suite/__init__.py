"""The scalability suite behind ``python -m benchmarks``: every scenario runs the bus and
the raw client (and, with ``--peers``, FastStream) doing the same work in one run.

model: payload and handlers; plan: sizes; brokers: starting and naming brokers;
track: readiness gate and counting; sides_*: one implementation per side; scenarios:
what is measured; runner: the loop; report, plots, progress: the output.
"""
