"""Why a first connect was cut off, asked of the server again.

A plain ``amqp://`` client on a TLS listener sees only "connection reset": RabbitMQ's TLS
port drops the AMQP header it cannot read as a handshake. A TLS handshake to the same
port (certificates not checked: this is a question, nothing is sent over it) tells the
two apart, so the error can say "use amqps://".
"""

from __future__ import annotations

import asyncio
import ssl

PROBE_TIMEOUT = 3.0
"""Seconds the probe's handshake may take; a first connect has failed already."""


def cut_off(exc: BaseException) -> bool:
    """``exc`` says the server closed or reset the connection (rather than refusing it
    or not answering), the way a TLS listener answers a plain client."""
    if isinstance(exc, ConnectionRefusedError | TimeoutError):
        return False
    if isinstance(exc, ConnectionError | asyncio.IncompleteReadError):
        return True
    text = str(exc).lower()
    return "reset" in text or "incomplete" in text or "closed" in text


async def speaks_tls(host_port: str) -> bool:
    """True when ``host:port`` completes a TLS handshake."""
    host, _, port = host_port.rpartition(":")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    try:
        async with asyncio.timeout(PROBE_TIMEOUT):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port), ssl=context)
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    return True
