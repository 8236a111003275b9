"""The whole shop in one process: every service of one configuration, side by side, as
``python -m services.demo`` and the tests run it. A deployment runs each service alone
instead (``bus run --store URL services.orders:service``); the services cannot tell the
difference.

Orders, inventory and payments keep their state in the bus's store (``Config.store``,
``$SHOP_STORE``); with none configured, a shop makes a SQLite file in a temporary
directory of its own (removed when the process exits), so the demo needs no server.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import bus
from services.checkout import Checkout
from services.config import Config
from services.inventory import Inventory
from services.notifications import Notifications
from services.orders import Orders
from services.payments import Payments


class Shop:
    """One instance of each service for ``cfg``, with their state in reach."""

    def __init__(self, cfg: Config, *, seed: int | None = None) -> None:
        if cfg.store is None:
            cfg = cfg.replace(store=_temporary_store())
        self.cfg = cfg
        self.orders = Orders(cfg)
        self.inventory = Inventory(cfg)
        self.payments = Payments(cfg, seed=seed)
        self.notifications = Notifications(cfg)
        self.checkout = Checkout(cfg)

    @property
    def services(self) -> list[bus.Service]:
        return [
            self.orders.service,
            self.inventory.service,
            self.payments.service,
            self.notifications.service,
            self.checkout.service,
        ]

    def subscriptions(self) -> Iterator[tuple[str, str]]:
        """(topic, group) of every subscription with a dead-letter queue (not responders)."""
        for service in self.services:
            for sub in service.subscriptions:
                if not sub.reply:
                    yield sub.topic, sub.group

    def bus(self, services: Iterable[bus.Service] | None = None, **options: object) -> bus.Bus:
        """A bus running every service of the shop (or ``services``) on its store, not
        yet started."""
        chosen = self.services if services is None else list(services)
        return bus.Bus(self.cfg.url, services=chosen, store=self.cfg.store, **options)  # type: ignore[arg-type]


def _temporary_store() -> str:
    """A SQLite file in a new temporary directory, removed at exit."""
    folder = tempfile.mkdtemp(prefix="shop-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return f"sqlite:///{Path(folder) / 'shop.db'}"
