"""A foreign producer's AMQP header table, byte by byte: the wire types it chose (a
double, a long string that is not UTF-8, a 32-bit int holding 7...), which pamqp alone
would not reproduce, and the properties class that sends it as it is."""

from __future__ import annotations

import struct

from aiormq.abc import DeliveredMessage
from pamqp import frame
from pamqp.commands import Basic
from pamqp.header import ContentHeader


class RawHeaders(Basic.Properties):
    """Properties whose headers table goes on the wire exactly as given; with
    ``send_id=False`` no message_id at all (aiormq would fill in a random one)."""

    def __init__(self, raw_table: bytes, *, send_id: bool = True, **props: object) -> None:
        super().__init__(headers={"placeholder": ""}, **props)  # sets the headers flag
        self.raw_table = raw_table
        self.send_id = send_id

    def encode_property(self, name: str, value: object) -> bytes:
        if name == "headers":
            return self.raw_table
        return super().encode_property(name, value)  # type: ignore[arg-type]

    def marshal(self) -> bytes:
        if self.send_id:
            return super().marshal()  # type: ignore[no-any-return]
        saved, self.message_id = self.message_id, None
        try:
            return super().marshal()  # type: ignore[no-any-return]
        finally:
            self.message_id = saved


def over_the_wire(props: Basic.Properties, body: bytes) -> DeliveredMessage:
    """What a consumer gets for ``props`` and ``body``: marshalled and read back by pamqp."""
    data = frame.marshal(ContentHeader(0, len(body), props), 1)
    _, _, header = frame.unmarshal(data)
    assert isinstance(header, ContentHeader)
    return DeliveredMessage(
        delivery=Basic.Deliver(delivery_tag=1), header=header, body=body, channel=None
    )


def field(name: str, tagged: bytes) -> bytes:
    key = name.encode()
    return bytes([len(key)]) + key + tagged


def long_bytes(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def table(*fields: bytes) -> bytes:
    return long_bytes(b"".join(fields))


# Every AMQP field type RabbitMQ takes, each as a foreign client may have written it.
TYPED_FIELDS = [
    field("double", b"d" + struct.pack(">d", 0.1)),  # pamqp alone narrows it to 32 bits
    field("float", b"f" + struct.pack(">f", 1.5)),
    field("not-utf8", b"S" + long_bytes(b"\xff\xfe raw")),  # pamqp alone cannot write it
    field("text", b"S" + long_bytes("héllo".encode())),
    field("int8", b"b" + struct.pack(">b", -5)),
    field("int16", b"s" + struct.pack(">h", -300)),
    field("int32", b"I" + struct.pack(">i", 7)),
    field("uint32", b"i" + struct.pack(">I", 4_000_000_000)),
    field("int64", b"l" + struct.pack(">q", -(2**40))),
    field("bool", b"t\x01"),
    field("void", b"V"),
    field("bytes", b"x" + long_bytes(b"\x00\x01\x02")),
    field("decimal", b"D" + struct.pack(">Bi", 2, 12345)),
    field("time", b"T" + struct.pack(">Q", 1_700_000_000)),
    field("list", b"A" + long_bytes(b"d" + struct.pack(">d", 2.2) + b"S" + long_bytes(b"s"))),
    field("table", b"F" + table(field("inner", b"d" + struct.pack(">d", 0.3)))),
]


def typed(value: object) -> object:
    """``value`` with the type of every part spelled out (True == 1, 0.1 == 0.1f...)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, value)
