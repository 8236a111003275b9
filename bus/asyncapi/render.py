"""Writing a document out: JSON, or YAML by a small emitter of our own (the document is
plain JSON data, so no YAML library is needed)."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from bus.errors import ConfigError

Format = Literal["json", "yaml"]
FORMATS = ("json", "yaml")

_PLAIN_KEY = re.compile(r"[A-Za-z_$][A-Za-z0-9_.$/-]*")
# Words YAML 1.1 readers take for booleans or null, quoted wherever they appear.
_RESERVED = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def render(doc: dict[str, Any], fmt: str = "json") -> str:
    """``doc`` as JSON (indented, keys in document order) or YAML; ends with a newline."""
    if fmt == "json":
        return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        return "\n".join(_yaml(doc, 0)) + "\n"
    raise ConfigError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")


def _key(key: str) -> str:
    if _PLAIN_KEY.fullmatch(key) and key.lower() not in _RESERVED:
        return key
    return json.dumps(key, ensure_ascii=False)


def _scalar(value: Any) -> str:
    # A JSON string is a valid YAML double-quoted scalar; numbers, true, false, null too.
    return json.dumps(value, ensure_ascii=False)


def _block(value: str) -> bool:
    """Worth a literal block (``|-``): several lines, and nothing a block cannot hold."""
    return (
        "\n" in value
        and not value.startswith((" ", "\n"))
        and not value.endswith(("\n", " "))
        and all(c == "\n" or c.isprintable() for c in value)
    )


def _yaml(value: Any, indent: int) -> list[str]:
    """The lines of ``value`` as a block mapping or sequence at ``indent`` spaces."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        items = list(value.items())
        for key, item in items:
            lines.extend(_entry(f"{pad}{_key(str(key))}:", item, indent))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                inner = _yaml(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines.extend(inner[1:])
            else:
                lines.extend(_entry(f"{pad}-", item, indent))
    else:
        lines.append(pad + _scalar(value))
    return lines


def _entry(head: str, item: Any, indent: int) -> list[str]:
    if isinstance(item, dict | list) and item:
        return [head, *_yaml(item, indent + 2)]
    if isinstance(item, dict):
        return [f"{head} {{}}"]
    if isinstance(item, list):
        return [f"{head} []"]
    if isinstance(item, str) and _block(item):
        body = " " * (indent + 2)
        return [f"{head} |-", *(body + line if line else "" for line in item.split("\n"))]
    return [f"{head} {_scalar(item)}"]
