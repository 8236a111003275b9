"""Property tests of bus.Retry's schedule against DESIGN's bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import bus

policies = st.builds(
    bus.Retry,
    attempts=st.integers(1, 12),
    backoff=st.floats(0, 5, allow_nan=False),
    max_backoff=st.floats(0, 60, allow_nan=False),
    jitter=st.none() | st.floats(0, 2, allow_nan=False),
)


@given(policy=policies)
def test_each_retry_waits_at_least_its_floor_and_jitter_only_adds(policy: bus.Retry) -> None:
    jitter = policy.backoff / 4 if policy.jitter is None else policy.jitter
    for attempt in range(1, policy.attempts):
        delay = policy.delay_after(attempt, RuntimeError())
        assert delay is not None
        floor = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
        assert floor - 1e-9 <= delay <= floor + jitter + 1e-9


@given(policy=policies)
def test_attempts_counts_calls_in_all(policy: bus.Retry) -> None:
    retries = [policy.delay_after(a, ValueError()) for a in range(1, policy.attempts + 3)]
    assert sum(d is not None for d in retries) == policy.attempts - 1
    assert retries[policy.attempts - 1] is None


@given(attempt=st.integers(1, 5))
def test_only_listed_exceptions_are_retried(attempt: int) -> None:
    policy = bus.Retry(attempts=10, on=(ConnectionError,))
    assert policy.delay_after(attempt, ConnectionResetError()) is not None
    assert policy.delay_after(attempt, ValueError()) is None
