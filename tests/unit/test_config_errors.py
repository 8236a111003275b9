"""Bad configuration fails at once, saying what was wrong and how to fix it, and a
URL's password never shows."""

from __future__ import annotations

import pytest

import bus
from bus.url import redact


def test_unknown_scheme_names_the_known_ones() -> None:
    with pytest.raises(bus.ConfigError, match=r"unknown broker URL scheme 'redis'.*memory"):
        bus.Bus("redis://localhost")


def test_url_without_scheme() -> None:
    with pytest.raises(bus.ConfigError, match="expected scheme://"):
        bus.Bus("localhost:5672")


def test_bus_url_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUS_URL", "memory://from-env")
    assert bus.Bus().url == "memory://from-env"
    monkeypatch.delenv("BUS_URL")
    assert bus.Bus().url == "memory://"


def test_missing_extra_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_aio_pika(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith(("aio_pika", "adapters.rabbitmq")):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_aio_pika)
    import sys

    for mod in [m for m in sys.modules if m.startswith("adapters.rabbitmq")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(bus.ConfigError, match=r"pip install 'bus\[rabbitmq\]'"):
        bus.Bus("amqp://guest:s3cret@localhost/")


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:s3cret@localhost:5672/vhost",
        "kafka+ssl://alice:s3cret@broker:9093?sasl_mechanism=PLAIN",
        "kafka://broker:9092?username=alice&password=s3cret",
        "redis://:s3cret@localhost",
    ],
)
def test_passwords_never_appear(url: str) -> None:
    assert "s3cret" not in redact(url)
    with pytest.raises(bus.ConfigError) as caught:
        bus.Bus(url.replace("amqp", "nope").replace("kafka", "nope"))
    assert "s3cret" not in str(caught.value)


def test_bus_repr_hides_the_password() -> None:
    b = bus.Bus("memory://x")
    assert "memory://x" in repr(b)


def test_bad_service_declarations() -> None:
    svc = bus.Service("s")
    with pytest.raises(bus.ConfigError, match="async def"):

        @svc.subscribe("t")
        def sync_handler(payload: bytes) -> None: ...

    with pytest.raises(bus.ConfigError, match="annotate the first parameter"):

        @svc.subscribe("t")
        async def unannotated(payload) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(bus.ConfigError, match="concurrency"):
        svc.subscribe("t", concurrency=0)
    with pytest.raises(bus.ConfigError, match="topic"):
        svc.subscribe("")
    with pytest.raises(bus.ConfigError, match="attempts"):
        bus.Retry(attempts=0)


def test_string_annotations_are_resolved() -> None:
    from tests.unit import string_annotated

    [sub] = string_annotated.svc.subscriptions
    assert sub.payload_type is string_annotated.Ping
    assert sub.wants_context


async def test_publish_before_start_is_a_clear_error() -> None:
    b = bus.Bus("memory://not-started")
    with pytest.raises(bus.BusError, match="not started"):
        await b.publish("t", b"x")


def test_memory_url_options_are_checked() -> None:
    with pytest.raises(bus.ConfigError, match="unknown option"):
        bus.Bus("memory://x?max_qeue=3")
    with pytest.raises(bus.ConfigError, match="overflow"):
        bus.Bus("memory://x?overflow=drop")
    with pytest.raises(bus.ConfigError, match=r"option 'max_queue' .*Expected `int`, got `str`"):
        bus.Bus("memory://x?max_queue=lots")
    with pytest.raises(bus.ConfigError, match=r"option 'max_queue' .*>= 1"):
        bus.Bus("memory://x?max_queue=0")
    assert bus.Bus("memory://x?max_queue=7&overflow=reject").transport.config.max_queue == 7  # type: ignore[attr-defined]
