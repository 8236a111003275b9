"""The bus's own counters (``bus.messages.retried``, ``...dead_lettered``, ...) read back
in-process through the OpenTelemetry SDK's in-memory metric reader, for the demo's
summary. Without the SDK installed the counts read "n/a"."""

from __future__ import annotations

from collections import Counter
from typing import Any


class BusCounters:
    def __init__(self, reader: Any = None) -> None:
        self._reader = reader

    @classmethod
    def install(cls) -> BusCounters:
        """Install a meter provider that keeps the counts in memory (before any Bus
        starts: a bus looks for one when it starts)."""
        try:
            from opentelemetry import metrics
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        except ImportError:
            return cls()
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        return cls(reader)

    def by_topic(self, name: str, prefix: str = "") -> Counter[str] | None:
        """``bus.messages.<name>`` per topic (those starting with ``prefix``, which is
        cut off), or None when not counting."""
        if self._reader is None:
            return None
        counts: Counter[str] = Counter()
        data = self._reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != f"bus.messages.{name}":
                        continue
                    for point in metric.data.data_points:
                        topic = str(point.attributes.get("messaging.destination.name", "?"))
                        if topic.startswith(prefix):
                            counts[topic.removeprefix(prefix)] += int(point.value)
        return counts

    def describe(self, name: str, prefix: str = "") -> str:
        counts = self.by_topic(name, prefix)
        if counts is None:
            return "n/a (install opentelemetry-sdk to count)"
        detail = ", ".join(f"{topic}: {n}" for topic, n in counts.most_common())
        return f"{sum(counts.values())}" + (f" ({detail})" if detail else "")
