from __future__ import annotations

import msgspec

import bus


class Ping(msgspec.Struct):
    n: int


svc = bus.Service("stringy")


@svc.subscribe("ping")
async def on_ping(p: Ping, ctx: bus.Context) -> None: ...
