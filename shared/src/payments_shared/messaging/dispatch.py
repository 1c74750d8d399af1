"""Route each message of a batch to the handler for its type, inside the batch's unit of work."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from payments_shared.contracts import Envelope
from payments_shared.observability import about

from .consumer import BatchHandler, Delivery, Transaction

UoW = TypeVar("UoW")
Handler = Callable[[Any, Any], Awaitable[None]]


def dispatching(
    handlers: Mapping[type[Envelope], Handler],
    unit_of_work: Callable[[Transaction], UoW],
) -> BatchHandler:
    """A batch handler calling `handlers[type(message)](message, uow)` for each message in order.

    A message type with no handler is one this consumer does not care about (topics carry
    several types); it is skipped, and still counts as consumed.
    """

    async def handle(deliveries: Sequence[Delivery], tx: Transaction) -> None:
        uow = unit_of_work(tx)
        for delivery in deliveries:
            handler = handlers.get(type(delivery.message))
            if handler is None:
                continue
            with about(delivery.message):
                await handler(delivery.message, uow)

    return handle
