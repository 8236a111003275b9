"""Build an AsyncAPI 3.0 document from ``bus.Service`` objects.

What the services declare is all there is to go on: a channel per topic, a ``receive``
operation per handler (a responder's with a ``reply`` object naming the reply channel, the
requester's inbox), and a ``send`` operation per channel saying how to publish to it (or
request it) — the bus cannot know which services publish where, as handlers publish
through ``ctx.publish`` at run time. Messages carry their payload's JSON Schema (from
msgspec) and the headers the bus sets; each handler's docstring is its operation's
description, each service's module docstring its tag's. Several services merge into one
document: a topic several of them use is one channel with every payload type seen on it.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from bus.asyncapi import schemas
from bus.message import JSON
from bus.service import Service, Subscription
from bus.url import scheme

VERSION = "3.0.0"
_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]")
# AsyncAPI's names for protocols, by URL scheme.
_PROTOCOLS = {"amqp": "amqp", "amqps": "amqps", "kafka": "kafka", "kafka+ssl": "kafka-secure"}
_SECRET_PARAMS = ("password", "sasl_password")


def _key(text: str, taken: dict[str, Any]) -> str:
    """A key AsyncAPI accepts (``^[A-Za-z0-9_-]+$``) for ``text``, unused in ``taken``."""
    base = _KEY_BAD.sub("_", text) or "_"
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base}_{n}"
    return key


def _doc(obj: object) -> str | None:
    doc = inspect.getdoc(obj)
    return doc.strip() if doc else None


def _module_doc(sub: Subscription) -> str | None:
    module = sys.modules.get(getattr(sub.handler, "__module__", "") or "")
    return _doc(module) if module is not None else None


def _summary(doc: str | None) -> str | None:
    return doc.split("\n\n", 1)[0].replace("\n", " ") if doc else None


def _handler_name(sub: Subscription) -> str:
    """The handler's qualified name without the ``<locals>`` of a function it is made in."""
    return sub.name.rsplit("<locals>.", 1)[-1]


def _reply_type(sub: Subscription) -> Any:
    """What a responder returns: its return annotation (None: an empty body)."""
    try:
        hints = typing.get_type_hints(sub.handler)
    except Exception:
        return None
    out = hints.get("return", type(None))
    return None if out is type(None) else out


def server(url: str) -> dict[str, Any]:
    """The Server Object for ``url``, its password left out."""
    parts = urlsplit(url)
    netloc = parts.netloc
    user = None
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
    query = "&".join(
        p for p in parts.query.split("&") if p and p.split("=", 1)[0].lower() not in _SECRET_PARAMS
    )
    name = scheme(url)
    clean = (
        f"{name}://{f'{user}@' if user else ''}{netloc}{parts.path}{f'?{query}' if query else ''}"
    )
    out: dict[str, Any] = {
        "host": netloc or "embedded",
        "protocol": _PROTOCOLS.get(name, name),
    }
    if parts.path and name.startswith("amqp"):
        out["pathname"] = parts.path  # the virtual host
    out["description"] = (
        "The embedded in-process broker (adapters/memory)."
        if name == "memory"
        else f"The broker at {clean} (password left out)."
    )
    out["x-bus-url"] = clean
    return out


class _Builder:
    def __init__(self) -> None:
        self.channels: dict[str, Any] = {}
        self.operations: dict[str, Any] = {}
        self.messages: dict[str, Any] = {}
        self._channel_of: dict[str, str] = {}  # topic -> channel key
        self._reply_of: dict[str, str] = {}  # topic -> reply channel key
        self._sends: dict[str, dict[str, Any]] = {}  # topic -> its send operation

    def channel(self, topic: str) -> str:
        key = self._channel_of.get(topic)
        if key is None:
            key = self._channel_of[topic] = _key(topic, self.channels)
            self.channels[key] = {"address": topic, "messages": {}}
        return key

    def reply_channel(self, topic: str) -> str:
        key = self._reply_of.get(topic)
        if key is None:
            key = self._reply_of[topic] = _key(f"{topic}.reply", self.channels)
            self.channels[key] = {
                "address": None,
                "description": f"The requester's inbox for replies to {topic}: each "
                "requester has its own, named in the request's reply-to.",
                "messages": {},
            }
        return key

    def message_ref(self, channel: str, name: str) -> dict[str, str]:
        """Put message ``name`` on ``channel``; the reference an operation uses."""
        self.channels[channel]["messages"][name] = {"$ref": f"#/components/messages/{name}"}
        return {"$ref": f"#/channels/{channel}/messages/{name}"}


def _message(name: str, schema: dict[str, Any], tp: Any, headers: str) -> dict[str, Any]:
    raw = tp is bytes
    msg: dict[str, Any] = {
        "name": name,
        "title": name,
        "contentType": "application/octet-stream" if raw else JSON,
        "headers": {"$ref": schemas.REF.format(name=headers)},
        "payload": schema,
        "correlationId": {
            "location": "$message.header#/correlation_id",
            "description": "Carried on by ctx.publish and ctx.request from the message "
            "being handled; a reply has its request's.",
        },
    }
    # The type's own docstring, not one inherited from msgspec.Struct.
    own = None if raw or not isinstance(tp, type) else tp.__dict__.get("__doc__")
    if own:
        msg["summary"] = _summary(inspect.cleandoc(own))
    return msg


def _name_for(schema: dict[str, Any], tp: Any, topic: str, suffix: str) -> str:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return str(ref.rsplit("/", 1)[1])
    if tp is bytes:
        return schemas.RAW
    return _KEY_BAD.sub("_", f"{topic}.{suffix}")


def document(
    services: Iterable[Service],
    *,
    url: str | None = None,
    title: str | None = None,
    version: str = "1.0.0",
    description: str | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``services`` (merged), with ``url`` as its server."""
    services = list(services)
    subs = [(service, sub) for service in services for sub in service.subscriptions]
    types: list[Any] = []
    for _, sub in subs:
        types.append(sub.payload_type)
        if sub.reply:
            reply = _reply_type(sub)
            types.append(bytes if reply is None else reply)
    payloads, components = schemas.payload_schemas(types)
    it = iter(zip(types, payloads, strict=True))

    b = _Builder()
    for service, sub in subs:
        tp, schema = next(it)
        channel = b.channel(sub.topic)
        name = _name_for(schema, tp, sub.topic, "payload")
        b.messages.setdefault(name, _message(name, schema, tp, schemas.HEADERS))
        ref = b.message_ref(channel, name)
        handler_doc = _doc(sub.handler)
        op: dict[str, Any] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel}"},
            "title": f"{service.name}: {_handler_name(sub)}",
            "messages": [ref],
            "tags": [{"name": service.name}],
        }
        if handler_doc:
            op["summary"] = _summary(handler_doc)
            op["description"] = handler_doc
        op["x-bus-group"] = sub.group
        op["x-bus-concurrency"] = sub.concurrency
        if sub.idempotent:
            op["x-bus-idempotent"] = True  # handled once in effect per message id (the inbox)
        send: dict[str, Any] = b._sends.get(sub.topic) or {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "title": f"{'request' if sub.reply else 'publish'} {sub.topic}",
            "messages": [],
        }
        if ref not in send["messages"]:
            send["messages"].append(ref)
        if sub.reply:
            rtp, rschema = next(it)
            rchannel = b.reply_channel(sub.topic)
            rname = _name_for(rschema, rtp, sub.topic, "reply")
            b.messages.setdefault(rname, _message(rname, rschema, rtp, schemas.REPLY_HEADERS))
            b.messages.setdefault("RemoteError", _remote_error())
            reply = {
                "address": {
                    "location": "$message.header#/reply_to",
                    "description": "The requester's inbox, from the request's reply-to.",
                },
                "channel": {"$ref": f"#/channels/{rchannel}"},
                "messages": [
                    b.message_ref(rchannel, rname),
                    b.message_ref(rchannel, "RemoteError"),
                ],
            }
            op["reply"] = reply
            send["reply"] = reply
            send["description"] = (
                f"b.request({sub.topic!r}, ...) or ctx.request: one responder of group "
                f"{sub.group!r} answers; a responder's error comes back as bus.RemoteError."
            )
        else:
            op["x-bus-retry"] = {
                "attempts": sub.retry.attempts,
                "backoff": sub.retry.backoff,
                "max_backoff": sub.retry.max_backoff,
            }
            op["x-bus-dead-letters"] = (
                f"after the last attempt: bus dlq list {sub.topic} --group {sub.group}"
            )
            send.setdefault(
                "description",
                f"b.publish({sub.topic!r}, ...) or ctx.publish: every group subscribed "
                "gets it. Who publishes here is not declared by the services.",
            )
        b._sends[sub.topic] = send
        b.operations[_key(f"{service.name}.{_handler_name(sub)}", b.operations)] = op
    for topic, send in b._sends.items():
        b.operations[_key(f"{send['title'].split()[0]}.{topic}", b.operations)] = send

    components["BusHeaders"] = schemas.headers_schema()
    components["BusReplyHeaders"] = schemas.reply_headers_schema()
    tags = []
    for service in services:
        tag: dict[str, Any] = {"name": service.name}
        module_doc = next((_module_doc(s) for s in service.subscriptions), None)
        if module_doc:
            tag["description"] = module_doc
        tags.append(tag)
    names = ", ".join(s.name for s in services) or "no services"
    info: dict[str, Any] = {
        "title": title or names,
        "version": version,
        "description": description
        or f"Generated from the services {names}: what they receive and answer, and the "
        "messages and headers on the wire.",
        "tags": tags,
    }
    doc: dict[str, Any] = {"asyncapi": VERSION, "info": info, "defaultContentType": JSON}
    if url is not None:
        doc["servers"] = {"broker": server(url)}
    doc["channels"] = {k: b.channels[k] for k in sorted(b.channels)}
    doc["operations"] = b.operations
    doc["components"] = {
        "messages": {k: b.messages[k] for k in sorted(b.messages)},
        "schemas": {k: components[k] for k in sorted(components)},
    }
    return doc


def _remote_error() -> dict[str, Any]:
    return {
        "name": "RemoteError",
        "title": "RemoteError",
        "summary": "The responder raised: the caller gets bus.RemoteError.",
        "contentType": "text/plain",
        "headers": {"$ref": schemas.REF.format(name=schemas.REPLY_HEADERS)},
        "payload": {"type": "string", "description": "The exception's message."},
    }
