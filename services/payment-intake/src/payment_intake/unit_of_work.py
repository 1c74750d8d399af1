"""What a handler works with: the repositories of one transaction, and publish() (the
message goes out if, and only if, the transaction commits)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from payment_intake.domain.commands import Answered, StoredCommand
from payment_intake.domain.intake import AccountView
from payment_intake.domain.payment import NewPayment, Payment, PaymentStatus
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.domain.provider import ClaimedCheckout
from payment_intake.domain.refunds import Refund
from payments_contracts import Envelope


@dataclass(frozen=True)
class IntakeConfig:
    policies: MerchantPolicies
    checkout_ttl_s: int = 900


@dataclass(frozen=True)
class InvoiceVersion:
    """An ERP version of an invoice's facts, as synced."""

    erp_version: int
    currency: str
    total_minor: int
    open_amount_minor: int
    erp_status: str
    billing_country: str
    posted_refs: list[str]
    restricted: bool


class InvoiceRepository(Protocol):
    async def preload(self, keys: Sequence[tuple[str, str]], accounts: Sequence[str]) -> None:
        """A run of facts starts: read (and lock) these invoices and accounts once; the calls
        below change them in memory until `flush` writes them in bulk."""

    async def flush(self) -> None:
        """Write what the run changed."""

    async def synced(self, account_id: str, invoice_number: str, version: InvoiceVersion) -> bool | None:
        """Apply a newer version; whether it *was* restricted (False: new), None if stale."""

    async def account_balance_payment(self, account_id: str, allowed: bool) -> bool:
        """Record whether the account may pay its balance; True when that is news."""

    async def registration(
        self, account_id: str, invoice_number: str, *, erp_version: int, registered: bool
    ) -> None: ...

    async def closed(self, account_id: str, invoice_number: str, *, erp_version: int) -> None: ...

    async def account_views(self, wanted: Sequence[tuple[str, list[str] | None]]) -> dict[str, AccountView]:
        """Per account, the invoices named (None: all of the account's) with their state."""


class CommandRepository(Protocol):
    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredCommand]: ...

    async def answered(self, answered: Answered) -> None: ...


class PaymentRepository(Protocol):
    async def write_run(
        self, opened: Sequence[NewPayment], answered: Sequence[Answered], *, ttl_s: int
    ) -> bool:
        """Store a run's payments and answers; False, with nothing stored, if an invoice or
        a key was taken meanwhile."""

    async def get_for_update(self, payment_id: UUID) -> Payment | None: ...

    async def account_of(self, payment_id: UUID) -> str | None:
        """The account a payment belongs to (None: no such payment), without a lock."""

    async def traces_of(self, payment_ids: Sequence[UUID]) -> dict[UUID, str]:
        """The W3C traceparent each payment last went on in (those that have one)."""

    async def get_many_for_update(self, payment_ids: Sequence[UUID]) -> list[Payment]: ...

    async def move(
        self,
        payment_id: UUID,
        to: PaymentStatus,
        *,
        reason: str | None = None,
        checkout_id: str | None = None,
        checkout_url: str | None = None,
        confirmed_minor: int | None = None,
        confirmed_currency: str | None = None,
        provider_payment_ref: str | None = None,
    ) -> None: ...

    async def checkouts_opened(self, opened: Sequence[tuple[UUID, str, str]]) -> None:
        """Payments whose checkout the provider opened, moved to checkout_open with the
        checkout's (id, URL), all in one go (the checkout opener's rounds)."""

    async def note_confirmation(
        self,
        payment_id: UUID,
        *,
        confirmed_minor: int | None,
        confirmed_currency: str | None,
        provider_payment_ref: str | None,
    ) -> None: ...

    async def keep_checkout_id(self, payment_id: UUID, checkout_id: str) -> None: ...

    async def flag(self, payment_id: UUID, reason: str) -> None: ...

    async def invoices_paid_by_others(self, payment: Payment) -> bool: ...

    async def log_callback(
        self, payment_id: UUID | None, webhook_id: str, provider_event: str, verdict: str, note: str
    ) -> None: ...


class CheckoutQueues(Protocol):
    """The work the background workers do for payments: checkouts to open, to expire, to
    ask the provider about (status sync) and to cancel at the provider. Each claim leases
    what it returns for `lease_s`, so a crashed worker's claims come back by themselves."""

    async def claim_to_open(self, *, batch_size: int, lease_s: float) -> list[Payment]: ...

    async def open_later(self, payment_id: UUID, delay_s: float) -> None: ...

    async def expiring(self, *, batch_size: int) -> list[Payment]:
        """Open payments past their expiry, locked (skipping those locked elsewhere)."""

    async def claim_to_sync(
        self, *, batch_size: int, older_than_s: float, lease_s: float, payment_ids: Sequence[UUID] | None
    ) -> list[ClaimedCheckout]: ...

    async def sync_at(self, due: Sequence[tuple[UUID, float]]) -> None:
        """Not yet due after all: ask again `seconds` after the payment last moved."""

    async def sync_later(self, payment_id: UUID, delay_s: float) -> None: ...

    async def cancel_at_provider(self, payment_id: UUID) -> None:
        """Ask the provider to cancel the checkout too (done by the provider worker)."""

    async def claim_to_cancel(self, *, batch_size: int, lease_s: float) -> list[ClaimedCheckout]: ...

    async def cancel_done(self, payment_id: UUID, state: str) -> None: ...

    async def cancel_later(self, payment_id: UUID, delay_s: float) -> None: ...


class WebhookRepository(Protocol):
    async def first_receipt(self, webhook_id: str) -> bool:
        """Remember a webhook id; False when it was received before."""


class RefundRepository(Protocol):
    async def request(
        self,
        *,
        refund_id: UUID,
        payment_id: UUID,
        account_id: str,
        amount_minor: int,
        currency: str,
        reason_code: str,
        requested_by: str,
    ) -> bool:
        """Store a refund to make; False when the payment already has one."""

    async def reopen_failed(self, payment_id: UUID, refund_id: UUID, requested_by: str) -> bool: ...

    async def get_for_update(self, refund_id: UUID) -> Refund | None: ...

    async def claim(self, *, batch_size: int, lease_s: float) -> list[Refund]: ...

    async def submitted(self, refund_id: UUID, provider_refund_id: str, *, query_after_s: float) -> None: ...

    async def retry_later(self, refund_id: UUID, delay_s: float, error: str) -> None: ...

    async def settle(self, refund_id: UUID, status: str, *, failure: str | None = None) -> None: ...


class UnitOfWork(Protocol):
    @property
    def config(self) -> IntakeConfig: ...

    @property
    def invoices(self) -> InvoiceRepository: ...

    @property
    def commands(self) -> CommandRepository: ...

    @property
    def payments(self) -> PaymentRepository: ...

    @property
    def checkouts(self) -> CheckoutQueues: ...

    @property
    def refunds(self) -> RefundRepository: ...

    @property
    def webhooks(self) -> WebhookRepository: ...

    def publish(self, message: Envelope) -> None: ...


# A worker's own transaction: committed (its messages with it) when the block ends.
UnitsOfWork = Callable[[], AbstractAsyncContextManager[UnitOfWork]]
