"""What the projection handlers work through: the rows of the read model a batch of
events touches, held in memory (an identity map, not repositories: a projection decides
nothing it must load piecemeal), and the events it parks until what they wait for
appears. The projector publishes nothing, so this is not a unit of work.
adapters/projection_batch.py implements it on one version's tables; the handler unit
tests use an in-memory fake (tests/fakes/status_projector.py)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from payments_contracts import Envelope

from .domain.model import AccountPolicy, Invoice, Park, ParkedEvent, Payment

InvoiceKey = tuple[str, str]
Position = tuple[str, int, int]  # topic, partition, offset


class ProjectionBatch(Protocol):
    async def load(self, invoice_keys: Iterable[InvoiceKey], payment_ids: Iterable[str]) -> None:
        """Read what the coming events touch (and each payment's invoices) not in memory yet."""

    # --- the read model ---------------------------------------------------------------------

    def invoice(self, account_id: str, invoice_number: str) -> Invoice | None: ...

    def require_invoice(self, account_id: str, invoice_number: str) -> Invoice:
        """The invoice; `Park` (waiting for it) when it is not known yet."""

    def add_invoice(self, invoice: Invoice) -> None: ...

    def changed(self, invoice: Invoice) -> None: ...

    def changed_invoices(self) -> list[Invoice]:
        """The invoices changed in this unit so far."""

    def payment(self, payment_id: str) -> Payment | None: ...

    def add_payment(self, payment: Payment) -> None: ...

    def payment_changed(self, payment: Payment) -> None: ...

    def account_policy(self, policy: AccountPolicy) -> None:
        """Keep the newest word on the account (by its time)."""

    def saw(self, at: datetime) -> None:
        """An event of this time was applied (how fresh the projection is)."""

    # --- parking ------------------------------------------------------------------------------

    def park(self, message: Envelope, position: Position, why: Park) -> None: ...

    def appeared(self) -> set[str]:
        """What parked events may wait for (`invoice:...`, `payment:...`) that appeared since
        the last call; emptied by the call."""

    async def parked_for(self, keys: set[str]) -> list[ParkedEvent]:
        """Events still parked, in this batch or before, waiting for one of `keys`, in the
        order they were read."""

    def parked_message(self, event: ParkedEvent) -> Envelope: ...

    def unpark(self, event: ParkedEvent) -> None:
        """The parked event has now been applied."""

    async def commit(self) -> None:
        """Write the changed rows and the parked events (as they are: nothing is worked out here)."""
