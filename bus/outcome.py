"""What a handler's outcome means. The one place that decides; no adapter re-decides it.

- returned: ack (a responder's reply is sent first);
- raised ``Reject``: dead-letter now, reason ``rejected``;
- undecodable payload: dead-letter now, reason ``undecodable``, handler never called;
- raised anything else: retry after the policy's delay while attempts remain and the
  error is one the policy retries, else dead-letter, reason ``failed``;
- crashed or cancelled before settling: nothing is acked, so the broker redelivers.
"""

from __future__ import annotations

import logging

from bus.dead_letter import Reason, dead_letter_headers, describe, retry_headers, slim, type_name
from bus.errors import DecodeError, MessageTooLarge, Reject
from bus.retry import Retry
from bus.transport import Delivery

log = logging.getLogger("bus.outcome")


def classify(exc: BaseException) -> Reason:
    if isinstance(exc, Reject):
        return "rejected"
    if isinstance(exc, DecodeError):
        return "undecodable"
    return "failed"


async def settle_failure(
    delivery: Delivery,
    exc: BaseException,
    *,
    topic: str,
    group: str,
    attempt: int,
    retry: Retry,
) -> float | None:
    """Retry or dead-letter ``delivery`` after its handler (or decoding) raised ``exc``.

    Returns the retry delay, or None when the message was dead-lettered.
    """
    message = delivery.message
    reason = classify(exc)
    delay = retry.delay_after(attempt, exc) if reason == "failed" else None
    extra = {
        "message_id": message.id,
        "correlation_id": message.correlation_id,
        "topic": topic,
        "group": group,
    }
    if delay is not None:
        log.info(
            "attempt %d of %s failed with %s: %s; retrying in %.3fs",
            attempt,
            topic,
            type_name(exc),
            describe(exc),
            delay,
            extra=extra,
        )
        await delivery.retry(delay, retry_headers(message, attempt + 1))
        return delay
    headers = dead_letter_headers(
        message, reason=reason, exc=exc, topic=topic, group=group, attempts=attempt
    )
    log.warning(
        "dead-lettering message %s of %s for group %s (%s after %d attempt(s)): %s: %s",
        message.id,
        topic,
        group,
        reason,
        attempt,
        type_name(exc),
        describe(exc),
        extra=extra,
    )
    try:
        await delivery.dead_letter(headers)
    except MessageTooLarge:
        # The body fits, the body with the bus-dlq-* headers does not: park it with the
        # reason and the exception's type but without the stack trace rather than not at all.
        log.warning("dead letter of %s too large for the broker; parked without its stack trace",
                    message.id, extra=extra)  # fmt: skip
        await delivery.dead_letter(slim(headers))
    return None
