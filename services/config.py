"""The shop's configuration, read from environment variables, so every process of one
deployment agrees on it: ``bus run services.payments:service`` reads the same variables
as ``python -m services.demo``.

| variable | meaning | default |
| --- | --- | --- |
| ``BUS_URL`` | the broker | ``memory://`` |
| ``SHOP_STORE`` | the store of orders, inventory and payments | a new SQLite temp file |
| ``SHOP_STYLE`` | ``choreography`` or ``orchestration`` | ``choreography`` |
| ``SHOP_PREFIX`` | namespace ``ns``: topics ``ns.<topic>``, groups ``ns-<service>`` | none |
| ``SHOP_API_KEY`` | the key the gateway wants in ``X-API-Key`` | ``dev-key`` |
| ``SHOP_STOCK`` | initial stock, ``sku=count,sku=count`` | ``widget=100000,gadget=100000`` |
| ``SHOP_PAYMENT_FLAKY`` | share of charge attempts that fail transiently (0..1) | ``0`` |
| ``SHOP_DECLINED_CARDS`` | cards the provider declines, comma separated | ``4000000000000002`` |
| ``SHOP_ATTEMPTS`` | handler calls per message before giving up | ``5`` |
| ``SHOP_BACKOFF`` | seconds before the first retry; doubles after | ``0.05`` |
| ``SHOP_REQUEST_TIMEOUT`` | seconds a request between services may take | ``5`` |
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Literal

import bus

Style = Literal["choreography", "orchestration"]
STYLES: tuple[Style, ...] = ("choreography", "orchestration")
DECLINED_CARD = "4000000000000002"
GOOD_CARD = "4242424242424242"


def _stock(text: str) -> dict[str, int]:
    stock: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        sku, sep, count = item.partition("=")
        if not sep or not sku.strip() or not count.strip().isdigit():
            raise bus.ConfigError(f"SHOP_STOCK item {item!r} must be sku=count, e.g. widget=100")
        stock[sku.strip()] = int(count)
    return stock


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise bus.ConfigError(f"{name}={raw!r} must be a number") from None
    if not low <= value <= high:
        raise bus.ConfigError(f"{name}={raw!r} must lie between {low} and {high}")
    return value


_PREFIX = re.compile(r"[A-Za-z0-9_-]{0,30}")


@dataclasses.dataclass(frozen=True)
class Config:
    url: str | None = None
    store: str | None = None
    """The store (``postgresql://...``, ``sqlite:///file.db``) of every stateful service;
    None: ``services.shop.Shop`` makes a SQLite file of its own."""
    style: Style = "choreography"
    prefix: str = ""
    api_key: str = "dev-key"
    stock: Mapping[str, int] = dataclasses.field(
        default_factory=lambda: {"widget": 100_000, "gadget": 100_000}
    )
    payment_flaky: float = 0.0
    declined_cards: frozenset[str] = frozenset({DECLINED_CARD})
    attempts: int = 5
    backoff: float = 0.05
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise bus.ConfigError(f"SHOP_STYLE={self.style!r} must be one of {', '.join(STYLES)}")
        if not _PREFIX.fullmatch(self.prefix):
            raise bus.ConfigError(
                f"SHOP_PREFIX={self.prefix!r} must be letters, digits, '_' or '-' (it starts "
                "group names too, and those cannot hold '.'), for example 'staging'"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        default = cls()
        cards = env.get("SHOP_DECLINED_CARDS")
        return cls(
            url=env.get("BUS_URL") or None,
            store=env.get("SHOP_STORE") or None,
            style=env.get("SHOP_STYLE", default.style),  # type: ignore[arg-type]
            prefix=env.get("SHOP_PREFIX", ""),
            api_key=env.get("SHOP_API_KEY", default.api_key),
            stock=_stock(env["SHOP_STOCK"]) if env.get("SHOP_STOCK") else default.stock,
            payment_flaky=_number(env, "SHOP_PAYMENT_FLAKY", 0.0, 0.0, 1.0),
            declined_cards=(
                frozenset(c.strip() for c in cards.split(",") if c.strip())
                if cards is not None
                else default.declined_cards
            ),
            attempts=int(_number(env, "SHOP_ATTEMPTS", default.attempts, 1, 100)),
            backoff=_number(env, "SHOP_BACKOFF", default.backoff, 0.0, 60.0),
            request_timeout=_number(env, "SHOP_REQUEST_TIMEOUT", 5.0, 0.01, 600.0),
        )

    def to_env(self) -> dict[str, str]:
        """The variables that make ``from_env`` give this configuration back."""
        env = {
            "SHOP_STYLE": self.style,
            "SHOP_PREFIX": self.prefix,
            "SHOP_API_KEY": self.api_key,
            "SHOP_STOCK": ",".join(f"{sku}={n}" for sku, n in self.stock.items()),
            "SHOP_PAYMENT_FLAKY": str(self.payment_flaky),
            "SHOP_DECLINED_CARDS": ",".join(sorted(self.declined_cards)),
            "SHOP_ATTEMPTS": str(self.attempts),
            "SHOP_BACKOFF": str(self.backoff),
            "SHOP_REQUEST_TIMEOUT": str(self.request_timeout),
        }
        if self.url:
            env["BUS_URL"] = self.url
        if self.store:
            env["SHOP_STORE"] = self.store
        return env

    def topic(self, name: str) -> str:
        """The deployment's name for topic ``name`` (one of services.contracts')."""
        return f"{self.prefix}.{name}" if self.prefix else name

    def name(self, service: str) -> str:
        """The deployment's name for ``service``, also its consumer group: groups are
        broker-wide on Kafka, so deployments sharing a broker must not share them."""
        return f"{self.prefix}-{service}" if self.prefix else service

    def retry(self) -> bus.Retry:
        """The retry policy of every subscription in the shop."""
        return bus.Retry(attempts=self.attempts, backoff=self.backoff, max_backoff=2.0)

    def replace(self, **changes: object) -> Config:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
