"""Broker URLs: which one to use, how to show one safely, how to read its query."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgspec

from bus.errors import ConfigError

C = TypeVar("C")

DEFAULT_URL = "memory://"
ENV_VAR = "BUS_URL"


def resolve(url: str | None) -> str:
    """The URL to use: the one given, else ``$BUS_URL``, else ``memory://``."""
    chosen = url if url is not None else os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in chosen:
        raise ConfigError(
            f"bad broker URL {redact(chosen)!r}: expected scheme://..., for example "
            "memory://, amqp://guest:guest@localhost:5672/ or kafka://localhost:9092"
        )
    return chosen


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``: safe for logs, errors and reprs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            query = parts.query
            if query and "password=" in query.lower():
                query = "&".join(
                    f"{k}=***" if k.lower() in ("password", "sasl_password") else f"{k}={v}"
                    for k, v in (p.partition("=")[::2] for p in query.split("&"))
                )
                return urlunsplit(parts._replace(query=query))
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:
        return "<unparseable URL>"


def query_params(url: str) -> dict[str, str]:
    """The URL's query as a dict, the last value winning."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def options(url: str, config: type[C], params: Mapping[str, object] | None = None) -> C:
    """``config`` (a msgspec Struct with ``forbid_unknown_fields``) from the URL's query
    options (or ``params``): strings become ints, floats and bools by the field types, and
    a bad or unknown option is a ConfigError naming it and what it should be."""
    try:
        return msgspec.convert(
            query_params(url) if params is None else params, config, strict=False
        )
    except msgspec.ValidationError as exc:
        what, _, where = str(exc).partition(" - at `$")
        option = where.strip("`.")
        if what.startswith("Object contains unknown field"):
            option = what.rsplit(" ", 1)[-1].strip("`")
            fields = ", ".join(getattr(config, "__struct_fields__", ()))
            what = f"unknown option; {scheme(url)}:// takes {fields}"
        raise ConfigError(f"option {option!r} in {redact(url)!r}: {what}") from None
