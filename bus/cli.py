"""The ``bus`` command: run services, look into dead letters, poke at a running system.

Examples:
  bus run services.demo:orders --url amqp://guest:guest@localhost/
  bus status --url amqp://guest:guest@localhost/
  bus dlq list order.placed --group orders
  bus dlq show order.placed --group orders --id 3f2a...
  bus dlq replay order.placed --group orders [--id 3f2a...]
  bus publish order.placed '{"order_id": "o-1", "total_cents": 990}' --key o-1
  bus request order.get '{"order_id": "o-1"}' --timeout 5
  bus docs services.orders:service services.payments:service --format yaml --out shop.yaml
  BUS_CONSOLE_TOKEN=... bus console --url amqp://guest:guest@localhost/ --port 8765
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import signal
import sys
from typing import Any

import anyio
import msgspec

from bus import presence
from bus.bus import Bus
from bus.errors import BusError, ConfigError
from bus.logs import MessageFilter
from bus.service import Service
from bus.url import redact

log = logging.getLogger("bus.cli")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with the bus's message fields when present."""

    FIELDS = ("message_id", "correlation_id", "topic", "group")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out)


def load_service(spec: str) -> list[Service]:
    """``module:attribute`` naming a bus.Service (or a list of them)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(
            f"{spec!r}: name a service as MODULE:ATTRIBUTE, e.g. services.demo:orders"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r}: {exc}") from None
    try:
        target = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}") from None
    found = target if isinstance(target, list | tuple) else [target]
    if not found or not all(isinstance(s, Service) for s in found):
        raise ConfigError(f"{spec!r} is not a bus.Service")
    return list(found)


def with_concurrency(service: Service, concurrency: int) -> Service:
    """A copy of ``service`` whose every handler runs ``concurrency`` at a time."""
    if concurrency < 1:
        raise ConfigError(f"--concurrency must be 1 or more, not {concurrency}")
    copy = Service(service.name)
    copy.subscriptions = [
        dataclasses.replace(s, concurrency=concurrency) for s in service.subscriptions
    ]
    return copy


async def _run(args: argparse.Namespace) -> None:
    services = [s for spec in args.services for s in load_service(spec)]
    if args.concurrency is not None:
        services = [with_concurrency(s, args.concurrency) for s in services]
    async with Bus(
        args.url, services=services, close_timeout=args.close_timeout, store=args.store
    ) as b:
        names = ", ".join(s.name for s in services)
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            print(f"running {names}: {b!r}", file=sys.stderr)
            async for signum in signals:
                print(
                    f"received {signal.Signals(signum).name}: closing gracefully", file=sys.stderr
                )
                break


async def _dlq(args: argparse.Namespace) -> None:
    async with Bus(args.url) as b:
        if args.action == "replay":
            ids = None if args.id is None else [args.id]
            moved = await b.replay(args.topic, group=args.group, message_ids=ids)
            if ids and not moved:
                raise BusError(
                    f"no dead letter with id {args.id!r} in group {args.group!r} on "
                    f"{args.topic!r}: nothing replayed (`bus dlq list` shows their ids)"
                )
            print(f"replayed {moved} dead letter(s) of group {args.group!r} on {args.topic!r}")
            return
        shown = 0
        async for letter in b.dead_letters(args.topic, group=args.group):
            if args.id and letter.message_id != args.id:
                continue
            if args.action == "list":
                print(
                    f"{letter.message_id}  {letter.reason or '?':<11} attempts={letter.attempts}  "
                    f"{letter.headers.get('bus-dlq-failed-at', '')}  "
                    f"{letter.exception_type}: {(letter.exception_message or '')[:80]}"
                )
            else:
                print(
                    json.dumps(
                        {
                            "message_id": letter.message_id,
                            "headers": letter.headers,
                            "body": letter.body.decode("utf-8", "replace"),
                        },
                        indent=2,
                        ensure_ascii=False,
                    )
                )
            shown += 1
            if args.limit and shown >= args.limit:
                break
        if args.action == "show" and args.id and not shown:
            raise BusError(f"no dead letter with id {args.id!r} in group {args.group!r}")
        if args.action == "list" and not shown:
            print(f"no dead letters for group {args.group!r} on {args.topic!r}")


async def _outbox(url: str) -> str:
    """One line on the outbox of the store at ``url``: rows waiting, the oldest's age
    (the relays' lag) and the rows in its dead letters."""
    from bus.store import open_store

    store = open_store(url)
    await store.open()
    try:
        stats = await store.outbox_stats()
    finally:
        await store.close()
    return (
        f"outbox of {store.label}: {stats.size} waiting, the oldest for {stats.lag:.1f}s; "
        f"{stats.dead} dead (bus_outbox_dead)"
    )


async def _status(args: argparse.Namespace) -> None:
    if args.store:
        print(await _outbox(args.store))
    async with Bus(args.url, presence_interval=None) as b:
        instances = await presence.survey(b.transport, args.window)
    if not instances:
        print(f"no service announced itself within {args.window:g}s")
        return
    print(f"{'SERVICE':<20} {'INSTANCE':<34} {'STATUS':<8} {'HOST':<24} {'STARTED':<25} LAST SEEN")
    for inst in instances:
        a = inst.last
        where = f"{a.host}:{a.pid}"
        print(
            f"{a.service:<20} {a.instance:<34} {inst.status:<8} {where:<24} "
            f"{a.started:<25} {a.sent}"
        )
        if args.verbose:
            for handler in a.handlers:
                print(f"    {handler}")


def _json_body(text: str) -> bytes:
    try:
        msgspec.json.decode(text.encode())
    except msgspec.DecodeError as exc:
        raise ConfigError(f"the payload is not valid JSON: {exc}") from None
    return text.encode()


async def _publish(args: argparse.Namespace) -> None:
    body = _json_body(args.payload)
    async with Bus(args.url) as b:
        message_id = await b.publish(args.topic, body, key=args.key)
    print(message_id)


async def _request(args: argparse.Namespace) -> None:
    body = _json_body(args.payload)
    async with Bus(args.url) as b:
        reply = await b.request(args.topic, body, response=bytes, timeout=args.timeout)
    print(reply.decode("utf-8", "replace"))


def _services(specs: list[str]) -> list[Service]:
    """The services named, each once; two different services may not share a name."""
    found: dict[str, Service] = {}
    for spec in specs:
        for service in load_service(spec):
            other = found.setdefault(service.name, service)
            if other is not service:
                raise ConfigError(
                    f"two different services are named {service.name!r} ({spec!r} is the "
                    "second): a document names each service once"
                )
    return list(found.values())


async def _docs(args: argparse.Namespace) -> None:
    from bus import asyncapi

    services = _services(args.services)
    # The server only when a broker is named: a document is often shared beyond one.
    url = args.url if args.url is not None else os.environ.get("BUS_URL")
    doc = asyncapi.document(services, url=url, title=args.title)
    text = asyncapi.render(doc, args.format)
    if args.out is None:
        sys.stdout.write(text)
        return
    try:
        await anyio.Path(args.out).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise BusError(f"cannot write {args.out}: {exc.strerror}") from None
    print(
        f"wrote {args.out}: AsyncAPI {doc['asyncapi']}, {len(services)} service(s)", file=sys.stderr
    )


async def _console(args: argparse.Namespace) -> None:
    try:
        from bus import console
    except ImportError as exc:
        raise ConfigError(
            f"the console needs {exc.name or exc}: pip install 'bus[console]'"
        ) from None
    token, made_up = console.token_from_env(generate=True)
    services = _services(args.services)
    state = console.Console(args.url, console.Auth(token), services)
    async with console.serving(console.create_app(state), args.host, args.port) as address:
        print(f"console on {address}/ watching {redact(state.url)}", file=sys.stderr)
        if made_up:
            print(
                f"{console.TOKEN_ENV} is not set, so this run made one up: log in at "
                f"{address}/#token={token}",
                file=sys.stderr,
            )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                break


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bus", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="broker URL (default: $BUS_URL or memory://)")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--log-level", default=None, help="default: INFO for run, WARNING otherwise"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run services until SIGTERM or SIGINT")
    run.add_argument("services", nargs="+", metavar="MODULE:SERVICE")
    run.add_argument("--close-timeout", type=float, default=10.0)
    run.add_argument(
        "--store",
        default=os.environ.get("BUS_STORE") or None,
        help="outbox and inbox database, postgresql://... or sqlite:///file.db "
        "(default: $BUS_STORE; needed by idempotent handlers)",
    )
    run.add_argument(
        "--concurrency", type=int, default=None, help="handlers in flight per subscription"
    )
    run.set_defaults(func=_run)

    status = sub.add_parser("status", help="list the live services and their instances")
    status.add_argument(
        "--window",
        type=float,
        default=presence.DEFAULT_INTERVAL * 1.5,
        help="seconds to listen for announcements (default: 1.5 x the default interval)",
    )
    status.add_argument("-v", "--verbose", action="store_true", help="list each handler too")
    status.add_argument(
        "--store",
        default=os.environ.get("BUS_STORE") or None,
        help="also show this store's outbox: size, lag, dead rows (default: $BUS_STORE)",
    )
    status.set_defaults(func=_status)

    dlq = sub.add_parser("dlq", help="browse and replay dead letters")
    dlq.add_argument("action", choices=["list", "show", "replay"])
    dlq.add_argument("topic")
    dlq.add_argument("--group", required=True)
    dlq.add_argument("--limit", type=int, default=0)
    dlq.add_argument("--id", default=None, help="only the dead letter with this message id")
    dlq.set_defaults(func=_dlq)

    pub = sub.add_parser("publish", help="publish a JSON payload")
    pub.add_argument("topic")
    pub.add_argument("payload", help="the JSON body")
    pub.add_argument("--key", default=None)
    pub.set_defaults(func=_publish)

    req = sub.add_parser("request", help="send a JSON request and print the reply")
    req.add_argument("topic")
    req.add_argument("payload", help="the JSON body")
    req.add_argument("--timeout", type=float, default=5.0)
    req.set_defaults(func=_request)

    docs = sub.add_parser("docs", help="write the AsyncAPI 3.0 document of services")
    docs.add_argument("services", nargs="+", metavar="MODULE:SERVICE")
    docs.add_argument("--format", choices=["json", "yaml"], default="json")
    docs.add_argument("--out", default=None, metavar="FILE", help="default: standard output")
    docs.add_argument("--title", default=None, help="the document's title")
    docs.set_defaults(func=_docs)

    con = sub.add_parser(
        "console",
        help="serve the web console (token from $BUS_CONSOLE_TOKEN)",
        description="Serve the web console: live services, flow, dead letters, contracts. "
        "Everything but the login needs the token in $BUS_CONSOLE_TOKEN (one is made up "
        "and printed when it is unset).",
    )
    con.add_argument(
        "services",
        nargs="*",
        metavar="MODULE:SERVICE",
        help="services whose contracts (payload schemas) to show; default: an outline "
        "from what running services announce",
    )
    con.add_argument("--port", type=int, default=8765, help="default 8765; 0 takes a free one")
    con.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    con.set_defaults(func=_console)
    for p in (
        run,
        status,
        dlq,
        pub,
        req,
        docs,
        con,
    ):  # --url also after the command, as the docs show
        p.add_argument("--url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler()
    handler.addFilter(MessageFilter())
    if args.log_format == "json":
        handler.setFormatter(JsonFormatter())
    level = args.log_level or ("INFO" if args.command == "run" else "WARNING")
    logging.basicConfig(level=level.upper(), handlers=[handler])
    if logging.getLogger().level > logging.DEBUG:
        # Drivers log what the adapters already translate into one clear bus error.
        for name in ("aiormq", "aio_pika", "aiokafka"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        anyio.run(args.func, args)
    except BusError as exc:
        print(f"bus: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
