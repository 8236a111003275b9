"""The retry policy of a subscription, with its schedule computed by tenacity."""

from __future__ import annotations

from dataclasses import dataclass, field

import tenacity

from bus.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently a failing handler is called again.

    ``attempts`` counts handler calls in all (1 means no retry). The k-th retry waits at
    least ``min(max_backoff, backoff * 2**(k-1))`` seconds; jitter (up to ``jitter``
    seconds, default a quarter of ``backoff``) only ever adds to that. Only exceptions
    that are instances of ``on`` are retried; others dead-letter at once.
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 30.0
    on: tuple[type[BaseException], ...] = (Exception,)
    jitter: float | None = None
    _wait: tenacity.wait.wait_base = field(init=False, repr=False, compare=False)
    _stop: tenacity.stop.stop_base = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.on, type):
            object.__setattr__(self, "on", (self.on,))
        if self.attempts < 1:
            raise ConfigError(
                f"Retry(attempts={self.attempts}): attempts counts calls, use 1 or more"
            )
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigError("Retry backoff and max_backoff must not be negative")
        jitter = self.backoff / 4 if self.jitter is None else self.jitter
        if jitter < 0:
            raise ConfigError("Retry jitter must not be negative")
        exponential = tenacity.wait_exponential(multiplier=self.backoff, max=self.max_backoff)
        wait = exponential + tenacity.wait_random(0, jitter) if jitter else exponential
        object.__setattr__(self, "_wait", wait)
        object.__setattr__(self, "_stop", tenacity.stop_after_attempt(self.attempts))

    def floor(self, retry_number: int) -> float:
        """The least wait before the ``retry_number``-th retry (from 1)."""
        return float(min(self.max_backoff, self.backoff * 2 ** (retry_number - 1)))

    def delay_after(self, attempt: int, exc: BaseException) -> float | None:
        """Seconds to wait before calling again after call number ``attempt`` raised
        ``exc``; None when no retry is due (out of attempts, or not a retried error)."""
        if not isinstance(exc, self.on):
            return None
        state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        if self._stop(state):
            return None
        return float(self._wait(state))


NO_RETRY = Retry(attempts=1)
