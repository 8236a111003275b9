"""What the shop's services say to each other: the payload types and the topic names.

Every service imports its messages from here and nothing from another service, so a
service can be moved, scaled or rewritten without touching the others.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

# -- topics (before the deployment's prefix, see services.config.Config.topic) -----------

ORDER_CREATE = "order.create"  # request: CreateOrder -> Order
ORDER_GET = "order.get"  # request: GetOrder -> Order
ORDER_PLACED = "order.placed"  # event: OrderPlaced
ORDER_CONFIRMED = "order.confirmed"  # event: OrderSettled
ORDER_FAILED = "order.failed"  # event: OrderSettled

# choreography: each service reacts to the previous one's event
STOCK_RESERVED = "stock.reserved"  # event: StockReserved
STOCK_REJECTED = "stock.rejected"  # event: StepFailed (nothing to undo)
STOCK_RELEASED = "stock.released"  # event: StepFailed (compensation done)
PAYMENT_COMPLETED = "payment.completed"  # event: PaymentCompleted
PAYMENT_FAILED = "payment.failed"  # event: StepFailed (stock must be released)

# orchestration: the checkout saga calls each step and reports the outcome
STOCK_RESERVE = "stock.reserve"  # request: ReserveStock -> Reservation
STOCK_RELEASE = "stock.release"  # request: ReleaseStock -> Released
PAYMENT_CHARGE = "payment.charge"  # request: Charge -> ChargeResult
PAYMENT_REFUND = "payment.refund"  # command: Refund, kept by the broker until done
CHECKOUT_SUCCEEDED = "checkout.succeeded"  # event: CheckoutOutcome
CHECKOUT_FAILED = "checkout.failed"  # event: CheckoutOutcome

# -- order states ---------------------------------------------------------------------

PENDING = "pending"
CONFIRMED = "confirmed"
FAILED = "failed"
FINAL_STATES = (CONFIRMED, FAILED)

# why inventory refuses a reservation for an order it has released already
ALREADY_RELEASED = "order already released"

# compensations, as recorded on a failed order
RELEASED_STOCK = "stock released"
REFUNDED_PAYMENT = "payment refund issued"

# -- payloads --------------------------------------------------------------------------

Sku = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Quantity = Annotated[int, msgspec.Meta(ge=1, le=1000)]
Card = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$")]


class Line(msgspec.Struct, frozen=True):
    sku: Sku
    quantity: Quantity
    price_cents: Annotated[int, msgspec.Meta(ge=0)] = 100


class NewOrder(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``POST /orders``."""

    customer: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    card: Card
    lines: Annotated[list[Line], msgspec.Meta(min_length=1, max_length=50)]


class CreateOrder(msgspec.Struct, frozen=True):
    order_id: str
    customer: str
    card: str
    lines: list[Line]


class GetOrder(msgspec.Struct, frozen=True):
    order_id: str
    wait: float = 0.0
    """Seconds to wait for the order to reach a final state before answering."""


class Order(msgspec.Struct):
    order_id: str
    customer: str
    lines: list[Line]
    total_cents: int
    status: str = PENDING  # one of PENDING, CONFIRMED, FAILED
    reason: str = ""
    compensations: list[str] = msgspec.field(default_factory=list)
    created_at: float = 0.0
    settled_at: float = 0.0


class OrderPlaced(msgspec.Struct, frozen=True):
    order_id: str
    card: str
    total_cents: int
    lines: list[Line]


class StockReserved(msgspec.Struct, frozen=True):
    order_id: str
    card: str
    total_cents: int


class PaymentCompleted(msgspec.Struct, frozen=True):
    order_id: str
    total_cents: int


class StepFailed(msgspec.Struct, frozen=True):
    order_id: str
    reason: str
    compensations: list[str] = []


class OrderSettled(msgspec.Struct, frozen=True):
    order_id: str
    customer: str
    status: str
    reason: str = ""


class ReserveStock(msgspec.Struct, frozen=True):
    order_id: str
    lines: list[Line]


class Reservation(msgspec.Struct, frozen=True):
    order_id: str
    reserved: bool
    reason: str = ""


class ReleaseStock(msgspec.Struct, frozen=True):
    order_id: str


class Released(msgspec.Struct, frozen=True):
    order_id: str
    released: bool


class Charge(msgspec.Struct, frozen=True):
    order_id: str
    card: str
    total_cents: int
    expires_at: float = 0.0
    """Unix time after which the caller has given up: charge no more (0: never)."""
    last: bool = False
    """The caller's last try: decide now (a provider still failing transiently counts as
    declined, "payment provider unavailable"), so every later charge of the order, a
    duplicate's included, gets the same answer."""


class ChargeResult(msgspec.Struct, frozen=True):
    order_id: str
    approved: bool
    reason: str = ""


class Refund(msgspec.Struct, frozen=True):
    order_id: str
    total_cents: int


class CheckoutOutcome(msgspec.Struct, frozen=True):
    order_id: str
    succeeded: bool
    reason: str = ""
    compensations: list[str] = []


def total(lines: list[Line]) -> int:
    return sum(line.quantity * line.price_cents for line in lines)


# -- errors a responder raises on purpose; callers tell them apart by RemoteError.error_type


class OrderNotFound(LookupError):
    """``order.get`` for an order id nobody created."""


class TransientPaymentError(ConnectionError):
    """The payment provider did not answer this time; trying again may work."""


class RequestExpired(TimeoutError):
    """A request read after its caller stopped waiting for the reply; not acted on."""


def error_name(cls: type[BaseException]) -> str:
    """How ``bus.RemoteError.error_type`` names an exception of class ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"
