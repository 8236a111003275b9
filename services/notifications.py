"""notifications: tells customers how their order ended. It writes what it would send to
its log; stateless, so any number of instances may run."""

from __future__ import annotations

import logging
from collections import Counter

import bus
from services import contracts as c
from services.config import Config

log = logging.getLogger("services.notifications")


class Notifications:
    def __init__(self, cfg: Config) -> None:
        self.sent: Counter[str] = Counter()  # this process's messages, by order status
        self.service = bus.Service(cfg.name("notifications"))
        for topic in (c.ORDER_CONFIRMED, c.ORDER_FAILED):
            self.service.subscribe(cfg.topic(topic), retry=cfg.retry())(self.on_settled)

    async def on_settled(self, event: c.OrderSettled) -> None:
        if event.status == c.CONFIRMED:
            text = f"Your order {event.order_id} is confirmed. Thank you!"
        else:
            text = f"Sorry, your order {event.order_id} could not go through: {event.reason}."
        log.info("email to %s: %s", event.customer, text)
        self.sent[event.status] += 1


notifications = Notifications(Config.from_env())
service = notifications.service
