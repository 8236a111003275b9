"""Broker URLs: which one to use, how to show one safely, how to read its query."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bus.errors import ConfigError

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
