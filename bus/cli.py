"""The ``bus`` command: run services, look into dead letters, poke at a running system.

Examples:
  bus run services.demo:orders --url amqp://guest:guest@localhost/
  bus status --url amqp://guest:guest@localhost/
  bus dlq list order.placed --group orders
  bus dlq show order.placed --group orders --id 3f2a...
  bus dlq replay order.placed --group orders
  bus publish order.placed '{"order_id": "o-1", "total_cents": 990}' --key o-1
  bus request order.get '{"order_id": "o-1"}' --timeout 5
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
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
    async with Bus(args.url, services=services, close_timeout=args.close_timeout) as b:
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
            moved = await b.replay(args.topic, group=args.group)
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


async def _status(args: argparse.Namespace) -> None:
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
    for p in (run, status, dlq, pub, req):  # --url also after the command, as the docs show
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
