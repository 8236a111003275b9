"""The whole shop in one process: every service of one configuration, side by side, as
``python -m services.demo`` and the tests run it. A deployment runs each service alone
instead (``bus run services.orders:service``); the services cannot tell the difference.
"""

from __future__ import annotations

from collections.abc import Iterator

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

    def bus(self, **options: object) -> bus.Bus:
        """A bus running every service of the shop (not yet started)."""
        return bus.Bus(self.cfg.url, services=self.services, **options)  # type: ignore[arg-type]
