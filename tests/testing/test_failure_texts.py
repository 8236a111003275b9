"""Every helper fails with a text that says what happened instead; the pytest plugin
(loaded by entry point) adds that text to a failing ``assert``, offers ``--bus-url``
and the ``test_bus`` fixture, and stays out of the way of tests that do not use it."""

from __future__ import annotations

import msgspec
import pytest

from bus.testing import TestBus
from bus.testing.report import explain
from tests.testing.shop_like import Placed, Reserved, Shipped, cascade

pytest_plugins = ["pytester"]


async def test_published_names_the_type_a_message_really_has() -> None:
    async with TestBus(services=cascade("ft")) as t:
        await t.publish("ft.placed", Placed("o-1", 1))
        await t.settle()
        with pytest.raises(AssertionError) as caught:
            t.published("ft.placed", Reserved)
        assert str(caught.value) == (
            "message 1 of 1 published to 'ft.placed' is a Placed, not a Reserved: "
            "Placed(order_id='o-1', quantity=1) "
            "(published(topic) without a Type gives each as it was published)"
        )


async def test_published_says_when_a_message_does_not_decode() -> None:
    class Strict(msgspec.Struct):
        order_id: int

    Strict.__qualname__ = "Placed"  # the same name, another shape
    async with TestBus() as t:
        await t.publish("ft.placed", Placed("o-1", 1))
        with pytest.raises(
            AssertionError,
            match=r"does not decode as Placed: .*Expected `int`, got `str` - at `\$.order_id`",
        ):
            t.published("ft.placed", Strict)


async def test_handled_names_the_type_a_handler_really_got() -> None:
    async with TestBus(services=cascade("fh")) as t:
        await t.publish("fh.placed", Placed("o-1", 1))
        await t.settle()
        with pytest.raises(AssertionError) as caught:
            t.handled("fh.placed", Shipped)
        assert str(caught.value) == (
            "reserve handled a Placed on 'fh.placed', not a Shipped: "
            "Placed(order_id='o-1', quantity=1)"
        )


async def test_a_failed_comparison_shows_what_was_published_instead() -> None:
    async with TestBus(services=cascade("fc")) as t:
        await t.publish("fc.placed", Placed("o-1", 0))  # rejected: nothing reserved
        await t.settle()
        got = t.published("fc.reserved", Reserved)
        lines = explain("==", got, [Reserved("o-1")])
        assert lines is not None
        text = "\n".join(lines[1:])
        assert text == (
            "t.published('fc.reserved' as Reserved): 0 message(s) published to 'fc.reserved'\n"
            "published meanwhile:\n"
            "  'fc.placed': 1 message(s), first Placed(order_id='o-1', quantity=0)\n"
            "got 0, expected 1:\n"
            "! [0] got      (nothing)\n"
            "! [0] expected Reserved(order_id='o-1')"
        )
        handled = t.handled("fc.placed", Placed)
        lines = explain("==", handled, [Placed("o-1", 0)])
        assert lines is not None
        assert (
            "  reserve on 'fc.placed' (group 'fc-inventory'), attempt 1, "
            "Placed(order_id='o-1', quantity=0): raised -> Reject: quantity 0 is not positive"
        ) in lines
        assert explain("==", [1], [1]) is None  # plain lists keep pytest's own text


INNER = """
import msgspec, pytest, bus
from bus.testing import TestBus

class Placed(msgspec.Struct):
    order_id: str

svc = bus.Service("PREFIX-svc")

@svc.subscribe("PREFIX.placed")
async def on_placed(event: Placed, ctx: bus.Context) -> None:
    await ctx.publish("PREFIX.accepted", event)

@pytest.fixture
def anyio_backend():
    return "asyncio"

@pytest.mark.anyio
async def test_flow(test_bus):
    async with test_bus(services=[svc]) as t:
        print("VIRTUAL", t.virtual, t.url.split(":")[0])
        await t.publish("PREFIX.placed", Placed("o-1"))
        await t.settle()
        assert t.published("PREFIX.accepted", Placed) == [Placed("o-2")]

def test_plain():
    assert 1 + 1 == 2
"""


def test_the_plugin_explains_a_failing_assert_and_leaves_other_tests_alone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_inner=INNER.replace("PREFIX", "plug"))
    result = pytester.runpytest_inprocess("-s", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*VIRTUAL True memory*",
            "*t.published('plug.accepted' as Placed): 1 message(s) published to 'plug.accepted'*",
            "*'plug.placed': 1 message(s), first Placed(order_id='o-1')*",
            "*! [[]0] got      Placed(order_id='o-1')*",
            "*! [[]0] expected Placed(order_id='o-2')*",
        ]
    )


def test_bus_url_runs_the_same_test_on_a_real_broker(
    pytester: pytest.Pytester, rabbitmq_url: str
) -> None:
    pytester.makepyfile(test_inner=INNER.replace("PREFIX", "plugrmq"))
    result = pytester.runpytest_inprocess(
        "-s", "-p", "no:cacheprovider", f"--bus-url={rabbitmq_url}"
    )
    result.assert_outcomes(passed=1, failed=1)  # the same failure, found in real time
    result.stdout.fnmatch_lines(
        ["*VIRTUAL False amqp*", "*! [[]0] got      Placed(order_id='o-1')*"]
    )
