"""``python -m services.gateway [--host H] [--port P]``: serve the gateway alone, with
the configuration of services.config (``BUS_URL``, ``SHOP_API_KEY``, ...)."""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

import bus
from services.config import Config
from services.gateway.server import serving


async def main(host: str, port: int) -> None:
    async with serving(Config.from_env(), host=host, port=port) as url:
        print(f"gateway listening on {url}", file=sys.stderr, flush=True)
        await anyio.sleep_forever()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        anyio.run(main, args.host, args.port)
    except KeyboardInterrupt:
        pass
    except bus.BusError as exc:  # it cannot start: a port taken, a broker unreachable
        sys.exit(f"gateway: error: {exc}")


if __name__ == "__main__":
    cli()
