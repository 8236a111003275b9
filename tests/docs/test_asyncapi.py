"""bus.asyncapi: documents generated from services are valid AsyncAPI 3.0 (checked against
the published JSON Schema), take their payload schemas from msgspec, show request-reply
as reply objects, leave the password out of the server and use docstrings."""

from __future__ import annotations

import copy
import json
from typing import Annotated

import msgspec
import pytest
import yaml

import bus
from bus.asyncapi import document, render
from bus.asyncapi.schemas import REF
from services.config import Config
from services.shop import Shop
from tests.docs.asyncapi import problems


class Ping(msgspec.Struct):
    """A ping, to see who is there."""

    n: Annotated[int, msgspec.Meta(ge=0)]
    """How many pings came before."""


class Pong(msgspec.Struct):
    n: int


def shop_services(style: str) -> list[bus.Service]:
    return Shop(Config(style=style)).services  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["choreography", "orchestration"])
def test_the_shop_is_valid_asyncapi_3(style: str) -> None:
    doc = document(shop_services(style), url="amqp://guest:guest@localhost:5672/")
    assert doc["asyncapi"] == "3.0.0"
    assert problems(doc) == []
    # every handler of every service is a receive operation on its topic
    subs = [(s.name, sub.topic) for s in shop_services(style) for sub in s.subscriptions]
    received = [
        (op["tags"][0]["name"], doc["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"])
        for op in doc["operations"].values()
        if op["action"] == "receive"
    ]
    assert sorted(received) == sorted(subs)


def test_the_validator_is_real() -> None:
    doc = document(shop_services("choreography"))
    broken = copy.deepcopy(doc)
    del broken["info"]["version"]
    broken["operations"]["orders_Orders_create"]["action"] = "subscribe"  # AsyncAPI 2 wording
    found = problems(broken)
    assert any(p.startswith("info") and "'version' is a required property" in p for p in found)
    assert any(p.startswith("operations/orders_Orders_create") for p in found)


def test_payload_schemas_come_from_msgspec() -> None:
    ping = bus.Service("pinger")

    @ping.subscribe("ping")
    async def on_ping(p: Ping) -> None:
        """Count the ping."""

    doc = document([ping])
    (ref,), components = msgspec.json.schema_components([Ping], ref_template=REF)
    message = doc["components"]["messages"]["Ping"]
    assert message["payload"] == ref
    assert message["summary"] == "A ping, to see who is there."
    schema = doc["components"]["schemas"]["Ping"]
    expected = components["Ping"]
    expected["properties"]["n"]["description"] = "How many pings came before."  # its docstring
    assert schema == expected
    assert message["headers"] == {"$ref": "#/components/schemas/BusHeaders"}
    assert "bus-payload-type" in doc["components"]["schemas"]["BusHeaders"]["properties"]
    assert doc["operations"]["pinger_on_ping"]["description"] == "Count the ping."


def test_request_reply_is_a_reply_object_on_both_sides() -> None:
    doc = document(shop_services("orchestration"))
    answer = doc["operations"]["payments_Payments_on_charge"]
    request = doc["operations"]["request_payment_charge"]
    for op in (answer, request):
        assert op["channel"] == {"$ref": "#/channels/payment_charge"}
        assert op["messages"] == [{"$ref": "#/channels/payment_charge/messages/Charge"}]
        assert op["reply"]["channel"] == {"$ref": "#/channels/payment_charge_reply"}
        assert op["reply"]["messages"] == [
            {"$ref": "#/channels/payment_charge_reply/messages/ChargeResult"},
            {"$ref": "#/channels/payment_charge_reply/messages/RemoteError"},
        ]
    assert answer["action"] == "receive" and request["action"] == "send"
    assert doc["channels"]["payment_charge_reply"]["address"] is None  # the requester's inbox
    # a fire-and-forget handler has none, and says how it retries
    refund = doc["operations"]["payments_Payments_on_refund"]
    assert "reply" not in refund and refund["x-bus-retry"]["attempts"] == 5
    assert refund["description"].startswith("A durable command, not a request")


@pytest.mark.parametrize(
    ("url", "host", "shown"),
    [
        ("amqp://shop:s3cr3t@rabbit:5672/prod", "rabbit:5672", "amqp://shop@rabbit:5672/prod"),
        (
            "kafka+ssl://app:s3cr3t@k1:9093,k2:9093?sasl_password=s3cr3t&partitions=8",
            "k1:9093,k2:9093",
            "kafka+ssl://app@k1:9093,k2:9093?partitions=8",
        ),
        ("memory://shop", "shop", "memory://shop"),
    ],
)
def test_the_server_comes_from_the_url_without_its_password(
    url: str, host: str, shown: str
) -> None:
    doc = document(shop_services("choreography"), url=url)
    server = doc["servers"]["broker"]
    assert server["host"] == host
    assert server["x-bus-url"] == shown
    assert "s3cr3t" not in json.dumps(doc)
    assert problems(doc) == []
    assert "servers" not in document(shop_services("choreography"))


def test_several_services_merge_into_one_document() -> None:
    audit, billing = bus.Service("audit"), bus.Service("billing")

    @audit.subscribe("ping")
    async def log_ping(p: Ping) -> None: ...

    @billing.subscribe("ping", group="billing-late")
    async def bill_ping(p: Ping, ctx: bus.Context) -> None: ...

    @billing.subscribe("ping")  # another payload type on the same topic
    async def raw_ping(p: bytes) -> None: ...

    @billing.respond("pong")
    async def pong(p: Ping) -> Pong:
        return Pong(p.n)

    doc = document([audit, billing])
    assert problems(doc) == []
    assert list(doc["channels"]) == ["ping", "pong", "pong_reply"]
    assert doc["channels"]["ping"]["messages"] == {
        "Ping": {"$ref": "#/components/messages/Ping"},
        "RawBytes": {"$ref": "#/components/messages/RawBytes"},
    }
    assert doc["components"]["messages"]["RawBytes"]["contentType"] == "application/octet-stream"
    receives = [op for op in doc["operations"].values() if op["action"] == "receive"]
    assert [op["x-bus-group"] for op in receives] == ["audit", "billing-late", "billing", "billing"]
    sends = [op for op in doc["operations"].values() if op["action"] == "send"]
    assert [op["title"] for op in sends] == ["publish ping", "request pong"]
    assert [t["name"] for t in doc["info"]["tags"]] == ["audit", "billing"]


def test_yaml_says_what_json_says() -> None:
    doc = document(shop_services("orchestration"), url="amqp://localhost/")
    text = render(doc, "yaml")
    assert yaml.safe_load(text) == doc
    assert json.loads(render(doc, "json")) == doc
    tricky = {
        "yes": "no",
        "x": ["", "null", "1", "a: b", "line\nbreak", "  lead", [], {}],
        "n": None,
    }
    assert yaml.safe_load(render(tricky, "yaml")) == tricky
    with pytest.raises(bus.ConfigError, match="unknown format 'toml': use one of json, yaml"):
        render(doc, "toml")
