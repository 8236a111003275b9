"""Issue 11 item 8, as the user meets it: ``bus dlq list`` on Kafka ends, and lists each
letter once, where the partition's end offset cannot be reached by records (transaction
markers, or letters retention removed after the end offset was read). The old browse
fetched forever and the command hung with it. The partition is staged as in
test_kafka_dlq_browse.py; the command is the CLI's own parser and handler."""

from __future__ import annotations

import anyio
import pytest

from adapters.kafka import KafkaTransport, dlq
from bus.cli import build_parser

from .test_kafka_dlq_browse import gapped, park  # noqa: F401 (gapped is a fixture)


async def test_bus_dlq_list_ends_where_the_end_offset_has_no_records(
    transport: KafkaTransport,
    names: tuple[str, str],
    gapped: None,  # noqa: F811
    kafka_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, group = names
    await park(transport, topic, group, 2)
    args = build_parser().parse_args(["--url", kafka_url, "dlq", "list", topic, "--group", group])
    with anyio.fail_after(2 * (dlq.STALL + 30)):  # the old browse never ended
        letters = [m async for m in transport.dead_letters(topic, group)]
        capsys.readouterr()
        await args.func(args)
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == [m.id for m in letters] and len(listed) == 2
