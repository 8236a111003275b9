"""The contracts view's document: AsyncAPI generated from the services the console was
given (``bus console MODULE:SERVICE...``, or the demo's own), else an outline built from
what running instances announce, which names topics, groups and handlers but not the
payloads' schemas (those live in the services' code, not on the wire)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from bus.asyncapi import document
from bus.asyncapi.document import VERSION, server
from bus.presence import parse_handler
from bus.service import Service

_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]")


def _key(text: str) -> str:
    return _KEY_BAD.sub("_", text)


def contracts(
    services: Sequence[Service], instances: list[dict[str, Any]], url: str
) -> dict[str, Any]:
    """The document for the contracts view."""
    if services:
        return document(services, url=url, title="the running services")
    return outline(instances, url)


def outline(instances: list[dict[str, Any]], url: str) -> dict[str, Any]:
    """An AsyncAPI document from presence alone: channels and operations, no schemas."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {
        "Unknown": {
            "name": "Unknown",
            "summary": "Payload schema not known to the console: run `bus console "
            "MODULE:SERVICE...` (or `bus docs`) with the services' code to see it.",
            "payload": {},
        }
    }
    services = sorted({i["service"] for i in instances})
    for inst in instances:
        for handler in inst["handlers"]:
            parsed = parse_handler(handler)
            if parsed is None:
                continue
            kind, topic, group = parsed
            channel = _key(topic)
            channels.setdefault(
                channel,
                {
                    "address": topic,
                    "messages": {"Unknown": {"$ref": "#/components/messages/Unknown"}},
                },
            )
            key = _key(f"{inst['service']}.{kind}.{topic}")
            op: dict[str, Any] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "title": f"{inst['service']}: {kind} {topic}",
                "messages": [{"$ref": f"#/channels/{channel}/messages/Unknown"}],
                "tags": [{"name": inst["service"]}],
                "x-bus-group": group,
            }
            if kind == "respond":
                reply = _key(f"{topic}.reply")
                channels.setdefault(
                    reply,
                    {
                        "address": None,
                        "messages": {"Unknown": {"$ref": "#/components/messages/Unknown"}},
                    },
                )
                op["reply"] = {
                    "channel": {"$ref": f"#/channels/{reply}"},
                    "messages": [{"$ref": f"#/channels/{reply}/messages/Unknown"}],
                }
            operations.setdefault(key, op)
    return {
        "asyncapi": VERSION,
        "info": {
            "title": "the running services (outline from presence)",
            "version": "1.0.0",
            "description": "Built from presence announcements: topics, groups and handlers "
            "only. Payload schemas need the services' code: `bus console MODULE:SERVICE...`.",
            "tags": [{"name": s} for s in services],
        },
        "servers": {"broker": server(url)},
        "channels": {k: channels[k] for k in sorted(channels)},
        "operations": {k: operations[k] for k in sorted(operations)},
        "components": {"messages": messages},
    }
