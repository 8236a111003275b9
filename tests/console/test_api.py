"""Every JSON route of the console, over a real server and broker: what it answers, and a
clear JSON error for each kind of bad input."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import msgspec
import pytest

import bus
from tests.conformance.helpers import unique
from tests.console.conftest import TOKEN, bearer, running
from tests.docs.asyncapi import problems

JSON = {"content-type": "application/json"}


class Job(msgspec.Struct):
    job_id: str
    fail: bool = False


def failing_service(topic: str, rpc: str) -> tuple[bus.Service, dict[str, bool]]:
    """A service whose handler fails (on a ``fail`` job, while ``broken["on"]``)."""
    svc = bus.Service(unique("worker"))
    broken = {"on": True}

    @svc.subscribe(topic, retry=bus.Retry(attempts=2, backoff=0.01))
    async def run_job(job: Job) -> None:
        """Run one job."""
        if job.fail and broken["on"]:
            raise ConnectionError(f"job {job.job_id}: the upstream is down")

    @svc.respond(rpc)
    async def echo(job: Job) -> Job:
        return job

    return svc, broken


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while not (found := await check()):
            await anyio.sleep(0.05)
        return found


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    text: str = response.json()["error"]
    return text


async def test_everything_but_the_login_needs_the_token(memory_url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, _ = failing_service(topic, rpc)
    async with running(memory_url, [svc]) as (_, client, _):
        guarded = [
            ("GET", "/api/services"),
            ("GET", "/api/flow"),
            ("GET", "/api/events"),
            ("GET", "/api/dead-letters"),
            ("GET", f"/api/dead-letters/{topic}?group={svc.name}"),
            ("POST", f"/api/dead-letters/{topic}/replay"),
            ("GET", "/api/asyncapi"),
        ]
        for method, path in guarded:
            for headers in ({}, {"authorization": "Bearer wrong-token"}):
                response = await client.request(method, path, headers=headers, json={})
                assert "not logged in" in error_of(response, 401), path

        # the page and its assets are open, and load nothing from elsewhere
        page = await client.get("/")
        assert page.status_code == 200
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("/static/console.js", "/static/console.css"):
            assert (await client.get(asset)).status_code == 200

        login = "/api/login"
        assert "wrong token" in error_of(await client.post(login, json={"token": "nope"}), 401)
        assert "token" in error_of(await client.post(login, json={}), 400)
        assert "not valid JSON" in error_of(
            await client.post(login, content=b"{", headers={"content-type": "application/json"}),
            400,
        )
        assert "Content-Type: application/json" in error_of(
            await client.post(login, data={"token": TOKEN}), 400
        )
        assert "JSON object" in error_of(await client.post(login, json=[TOKEN]), 400)

        response = await client.post(login, json={"token": TOKEN})
        assert response.status_code == 200
        cookie = response.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert TOKEN not in cookie  # a value derived from it, not the token
        assert (await client.get("/api/services")).status_code == 200
        assert (await client.post("/api/logout")).status_code == 200
        client.cookies.clear()  # what the browser does with the expired cookie
        assert "not logged in" in error_of(await client.get("/api/services"), 401)
        assert (await client.get("/api/services", headers=bearer())).status_code == 200


async def test_services_flow_and_events(memory_url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, _ = failing_service(topic, rpc)
    async with running(memory_url, [svc]) as (b, client, _):
        client.headers.update(bearer())

        async def live() -> dict[str, Any] | None:
            found = (await client.get("/api/services")).json()["instances"]
            return next((i for i in found if i["status"] == "live"), None)

        instance = await until(live)
        assert instance["service"] == svc.name
        assert instance["counted"] is True
        assert f"subscribe {topic} (group {svc.name}, concurrency 16)" in instance["handlers"]
        assert (await client.get("/api/services")).json()["broker"] == memory_url

        await b.publish(topic, Job("ok"))
        await b.publish(topic, Job("bad", fail=True))

        async def counted() -> dict[str, Any] | None:
            series = (await client.get("/api/flow")).json()["series"]
            mine = next((s for s in series if s["topic"] == topic), None)
            return mine if mine and mine["totals"]["dead_lettered"] == 1 else None

        mine = await until(counted)
        assert mine["group"] == svc.name
        assert mine["totals"] == {"handled": 1, "failed": 2, "retried": 1, "dead_lettered": 1}
        assert sum(mine["rates"]["dead_lettered"]) * 0.5 == pytest.approx(1, abs=0.01)

        with anyio.fail_after(10):
            async with client.stream("GET", "/api/events") as events:
                assert events.headers["content-type"].startswith("text/event-stream")
                lines = events.aiter_lines()
                assert await anext(lines) == "event: update"
                data = await anext(lines)
        update = json.loads(data.removeprefix("data: "))
        assert {i["service"] for i in update["services"]["instances"]} == {svc.name}
        assert any(s["topic"] == topic for s in update["flow"]["series"])


async def dead_letters_browse_and_replay(url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, broken = failing_service(topic, rpc)
    async with running(url, [svc]) as (b, client, _):
        client.headers.update(bearer())
        path = f"/api/dead-letters/{topic}"
        group = {"group": svc.name}

        async def subscribed() -> bool:
            found = (await client.get("/api/dead-letters")).json()["subscriptions"]
            return any(s["topic"] == topic for s in found)

        await until(subscribed)
        await b.publish(topic, Job("j-1", fail=True))

        async def parked() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = (await client.get(path, params=group)).json()["letters"]
            return found

        (letter,) = await until(parked)
        assert letter["reason"] == "failed"
        assert letter["exception_type"] == "builtins.ConnectionError"
        assert letter["exception_message"] == "job j-1: the upstream is down"
        assert "Traceback" in letter["stacktrace"] and "run_job" in letter["stacktrace"]
        assert letter["attempts"] == 2
        assert json.loads(letter["body_json"]) == {"job_id": "j-1", "fail": True}
        assert letter["body_json"].startswith("{\n  ")  # pretty-printed
        assert letter["headers"]["bus-dlq-consumer-group"] == svc.name

        summary = (await client.get("/api/dead-letters")).json()["subscriptions"]
        assert {"topic": topic, "group": svc.name, "count": 1, "capped": False} in summary
        assert not any(s["topic"] == rpc for s in summary)  # responders park nothing

        broken["on"] = False  # the upstream is back
        replayed = await client.post(f"{path}/replay", json=group)
        assert replayed.json() == {"topic": topic, "group": svc.name, "replayed": 1}

        async def handled() -> bool:
            series = (await client.get("/api/flow")).json()["series"]
            mine = next(s for s in series if s["topic"] == topic)
            return bool(mine["totals"]["handled"] == 1)

        await until(handled)
        assert await parked() == []
        assert [letter async for letter in b.dead_letters(topic, group=svc.name)] == []


async def test_dead_letters_browse_and_replay_on_memory(memory_url: str) -> None:
    await dead_letters_browse_and_replay(memory_url)


async def test_dead_letters_browse_and_replay_on_rabbitmq(rabbitmq_url: str) -> None:
    await dead_letters_browse_and_replay(rabbitmq_url)


async def test_replay_one_dead_letter_by_id(memory_url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, broken = failing_service(topic, rpc)
    async with running(memory_url, [svc]) as (b, client, console):
        client.headers.update(bearer())
        path, group = f"/api/dead-letters/{topic}", svc.name

        async def heard() -> list[tuple[str, str, bool]]:
            return console.watcher.subscriptions()

        await until(heard)
        for job in ("j-1", "j-2", "j-3"):
            await b.publish(topic, Job(job, fail=True))

        async def parked() -> list[dict[str, Any]]:
            found = (await client.get(path, params={"group": group})).json()["letters"]
            return found if len(found) == 3 else []

        first, middle, last = await until(parked)
        broken["on"] = False
        body = {"group": group, "message_id": middle["message_id"]}
        replayed = await client.post(f"{path}/replay", json=body)
        assert replayed.json() == {"topic": topic, "group": group, "replayed": 1}
        left = (await client.get(path, params={"group": group})).json()["letters"]
        assert [d["message_id"] for d in left] == [first["message_id"], last["message_id"]]
        # Gone now: a second replay of it is a clear 404, and moves nothing.
        again = await client.post(f"{path}/replay", json=body)
        assert f"no dead letter with id {middle['message_id']!r}" in error_of(again, 404)
        assert len((await client.get(path, params={"group": group})).json()["letters"]) == 2


async def test_bad_input_is_a_clear_json_error(memory_url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, _ = failing_service(topic, rpc)
    async with running(memory_url, [svc]) as (_, client, console):
        client.headers.update(bearer())

        async def heard() -> list[tuple[str, str, bool]]:
            return console.watcher.subscriptions()

        await until(heard)
        letters, replay = f"/api/dead-letters/{topic}", f"/api/dead-letters/{topic}/replay"
        group, other = svc.name, "/api/dead-letters/nope"
        one = {"group": group}

        def get(path: str, **params: str) -> Awaitable[httpx.Response]:
            return client.get(path, params=params)

        cases: list[tuple[Awaitable[httpx.Response], int, str]] = [
            (get("/api/dead-letters/no.such", group=group), 404, "unknown topic 'no.such'"),
            (get("/api/dead-letters/bad*topic", group=group), 400, "is not a valid topic name"),
            (get(letters, group="bad.group"), 400, "'bad.group' is not a valid group"),
            (get(letters, group="other"), 404, f"unknown group 'other' on '{topic}'"),
            (get(letters), 400, "name the consumer group"),
            (get(letters, group=group, limit="0"), 400, "limit must be a whole number"),
            (get(letters, group=group, limit="ten"), 400, "limit must be a whole number"),
            (get(f"/api/dead-letters/{rpc}", group=group), 404, f"unknown topic '{rpc}'"),
            (client.post(replay, json={"group": "bad:group"}), 400, "is not a valid group"),
            (client.post(replay, json={"group": 7}), 400, '"group" must be a string'),
            (client.post(replay, json={}), 400, "name the consumer group"),
            (client.post(replay, json={**one, "message_id": 7}), 400, '"message_id" must'),
            (client.post(replay, json={**one, "message_id": ""}), 400, '"message_id" must'),
            (client.post(replay, json={**one, "message_id": "nope"}), 404,
             f"no dead letter with id 'nope' in group '{group}'"),
            (client.post(replay, content=b"[]", headers=JSON), 400, "JSON object"),
            (client.post(replay, data={"group": group}), 400, "Content-Type: application/json"),
            (client.post(f"{other}/replay", json={"group": group}), 404, "unknown topic 'nope'"),
            (get("/api/asyncapi", format="xml"), 400, "format must be json or yaml"),
            (get("/api/no-such-route"), 404, "no such route: GET /api/no-such-route"),
            (get(replay), 404, f"no such route: GET {replay}"),
        ]  # fmt: skip
        for call, status, text in cases:
            response = await call
            assert text in error_of(response, status), response.text


async def test_asyncapi_of_the_running_services(memory_url: str) -> None:
    topic, rpc = unique("jobs"), unique("rpc")
    svc, _ = failing_service(topic, rpc)
    async with running(memory_url, [svc], contracts=[svc]) as (_, client, console):
        client.headers.update(bearer())
        doc = (await client.get("/api/asyncapi")).json()
        assert problems(doc) == []
        assert doc["servers"]["broker"]["x-bus-url"] == memory_url
        (receive,) = [
            op for op in doc["operations"].values() if op.get("x-bus-group") and "reply" not in op
        ]
        assert receive["description"] == "Run one job."
        text = (await client.get("/api/asyncapi", params={"format": "yaml"})).text
        assert text.startswith('asyncapi: "3.0.0"')

        # Without the services' code: an outline from what the instances announce.
        console.services = []

        async def heard() -> list[dict[str, Any]]:
            return console.watcher.instances()

        await until(heard)
        outline = (await client.get("/api/asyncapi")).json()
        assert problems(outline) == []
        assert {c["address"] for c in outline["channels"].values()} == {topic, rpc, None}
        answers = [op for op in outline["operations"].values() if "reply" in op]
        assert [op["title"] for op in answers] == [f"{svc.name}: respond {rpc}"]
