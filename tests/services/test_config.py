"""The shop's configuration from environment variables: every process of a deployment
reads the same variables, so ``to_env`` and ``from_env`` must agree; bad values fail at
start with a message naming the variable."""

from __future__ import annotations

import pytest

import bus
from services.config import Config


def test_defaults_and_a_round_trip_through_the_environment() -> None:
    assert Config.from_env({}) == Config()
    cfg = Config(
        url="memory://x",
        style="orchestration",
        prefix="staging",
        api_key="k",
        stock={"a": 1, "b": 0},
        payment_flaky=0.25,
        declined_cards=frozenset({"4000000000000002", "4000000000009995"}),
        attempts=7,
        backoff=0.5,
        request_timeout=2.0,
    )
    assert Config.from_env(cfg.to_env()) == cfg
    assert cfg.topic("order.placed") == "staging.order.placed"
    assert cfg.name("orders") == "staging-orders"
    assert Config.from_env({"SHOP_DECLINED_CARDS": ""}).declined_cards == frozenset()


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SHOP_STYLE": "anarchy"}, "SHOP_STYLE"),
        ({"SHOP_STOCK": "widget"}, "SHOP_STOCK"),
        ({"SHOP_STOCK": "widget=many"}, "SHOP_STOCK"),
        ({"SHOP_PAYMENT_FLAKY": "1.5"}, "SHOP_PAYMENT_FLAKY"),
        ({"SHOP_PAYMENT_FLAKY": "often"}, "SHOP_PAYMENT_FLAKY"),
        ({"SHOP_ATTEMPTS": "0"}, "SHOP_ATTEMPTS"),
        ({"SHOP_PREFIX": "has space"}, "SHOP_PREFIX"),
        ({"SHOP_PREFIX": "staging."}, "SHOP_PREFIX"),
    ],
)
def test_a_bad_value_names_its_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(bus.ConfigError, match=names):
        Config.from_env(env)
