"""The JSON Schema side of a document: payload schemas from msgspec, each field's
docstring as its description, and the headers the bus sets on every message."""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from typing import Any

import msgspec

from bus import message as m

REF = "#/components/schemas/{name}"
HEADERS = "BusHeaders"
REPLY_HEADERS = "BusReplyHeaders"
RAW = "RawBytes"

# bytes payloads travel as they are, not base64 as msgspec's schema for bytes says.
_RAW_SCHEMA = {
    "type": "string",
    "format": "binary",
    "description": "Raw bytes: the body exactly as published, not decoded by the bus.",
}


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def headers_schema() -> dict[str, Any]:
    """What the bus writes into a message's headers (AMQP headers, Kafka record headers);
    the message id, correlation id, reply-to and content type travel in the broker's own
    fields where it has them."""
    return {
        "type": "object",
        "description": headers_schema.__doc__,
        "properties": {
            m.PAYLOAD_TYPE: _text("The payload's type name (the Struct's qualified name)."),
            m.CAUSATION_ID: _text("The id of the message whose handler published this one."),
            m.ATTEMPT: _text("On a retried copy: which call of the handler this is (from 1)."),
            m.FIRST_FAILED_AT: _text(
                "On a retried copy: when the first attempt failed (RFC 3339)."
            ),
            m.DEADLINE: _text("On a request: UNIX time (s) after which nobody waits for it."),
            m.TRACEPARENT: _text("W3C trace context of the publisher's span."),
            m.TRACESTATE: _text("W3C trace state, when the tracer sets one."),
        },
        "additionalProperties": {"type": "string"},
    }


def reply_headers_schema() -> dict[str, Any]:
    """Headers of a reply to a request."""
    return {
        "type": "object",
        "description": reply_headers_schema.__doc__,
        "properties": {
            m.REQUEST_ID: _text("The message id of the request this answers."),
            m.ERROR_TYPE: _text(
                "On an error reply only: module.QualName of the exception the responder "
                "raised; the body is then its message as text/plain (bus.RemoteError)."
            ),
        },
        "required": [m.REQUEST_ID],
        "additionalProperties": {"type": "string"},
    }


def field_docs(cls: type) -> dict[str, str]:
    """Docstrings written under a class's fields (``x: int`` then ``\"\"\"...\"\"\"``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for field, doc in itertools.pairwise(body):
        if (
            isinstance(field, ast.AnnAssign)
            and isinstance(field.target, ast.Name)
            and isinstance(doc, ast.Expr)
            and isinstance(doc.value, ast.Constant)
            and isinstance(doc.value.value, str)
        ):
            docs[field.target.id] = inspect.cleandoc(doc.value.value)
    return docs


def _structs(tp: Any, found: dict[str, type]) -> None:
    """Every Struct type reachable from ``tp``, by its schema name."""
    info = msgspec.inspect.type_info(tp)
    stack: list[msgspec.inspect.Type] = [info]
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if isinstance(t, msgspec.inspect.StructType):
            found.setdefault(t.cls.__name__, t.cls)
            stack.extend(f.type for f in t.fields)
        for name in ("item_type", "key_type", "value_type"):
            sub = getattr(t, name, None)
            if isinstance(sub, msgspec.inspect.Type):
                stack.append(sub)
        for name in ("item_types", "types"):
            stack.extend(getattr(t, name, ()) or ())


def payload_schemas(types: list[Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One schema per type in ``types`` (a ``$ref`` for a Struct) and the components they
    refer to, with field docstrings added as descriptions."""
    is_raw = [tp is bytes for tp in types]
    typed = [tp for tp, raw in zip(types, is_raw, strict=True) if not raw]
    schemas, components = msgspec.json.schema_components(typed, ref_template=REF)
    structs: dict[str, type] = {}
    for tp in typed:
        _structs(tp, structs)
    for name, schema in components.items():
        cls = structs.get(name)
        props = schema.get("properties") if cls is not None else None
        if not props:
            continue
        for field, doc in field_docs(cls).items():  # type: ignore[arg-type]
            if field in props and "description" not in props[field]:
                props[field]["description"] = doc
    out: list[dict[str, Any]] = []
    it = iter(schemas)
    for raw in is_raw:
        out.append(dict(_RAW_SCHEMA) if raw else next(it))
    return out, components
