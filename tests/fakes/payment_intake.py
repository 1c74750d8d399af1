"""payment-intake's unit of work in memory, for handler and worker unit tests.

It keeps the properties the SQL has that handlers rely on: a stale ERP version changes
nothing; an invoice has at most one open payment and a key one answer (a run that
breaks either stores nothing); claims lease what they return; a unit of work that
raises leaves nothing behind and publishes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from payment_intake.domain.commands import Answered, StoredCommand
from payment_intake.domain.intake import AccountView, InvoiceFacts
from payment_intake.domain.payment import OPEN, NewPayment, Payment, PaymentStatus
from payment_intake.domain.policy import MerchantPolicies
from payment_intake.domain.provider import ClaimedCheckout
from payment_intake.domain.refunds import OPEN_REFUND, Refund
from payment_intake.unit_of_work import IntakeConfig, InvoiceVersion, UnitOfWork
from payments_contracts import Envelope


@dataclass
class PaymentRow:
    payment: Payment
    next_attempt_at: datetime | None
    end_reason: str | None = None
    checkout_url: str | None = None
    sync_next_at: datetime | None = None
    sync_attempts: int = 0
    cancel_state: str | None = None
    cancel_next_at: datetime | None = None
    cancel_attempts: int = 0


@dataclass
class Allocation:
    payment_id: UUID
    account_id: str
    invoice_number: str
    amount_minor: int
    is_open: bool = True
    succeeded: bool = False


@dataclass
class Store:
    """The tables."""

    now: datetime = field(default_factory=lambda: datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    invoices: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, bool] = field(default_factory=dict)
    commands: dict[tuple[str, str], StoredCommand] = field(default_factory=dict)
    payments: dict[UUID, PaymentRow] = field(default_factory=dict)
    allocations: list[Allocation] = field(default_factory=list)
    callback_log: list[tuple[UUID | None, str, str, str, str]] = field(default_factory=list)
    refunds: dict[UUID, Refund] = field(default_factory=dict)
    refund_next_at: dict[UUID, datetime | None] = field(default_factory=dict)
    webhooks_received: set[str] = field(default_factory=set)
    runs_written: int = 0  # write_run calls, refused ones too
    # Runs once before the next run of pay commands is written: another consumer's race.
    before_write: Callable[[Store], None] | None = None

    def later(self, seconds: float) -> datetime:
        return self.now + timedelta(seconds=seconds)

    def payment(self, payment_id: UUID) -> Payment:
        return self.payments[payment_id].payment


class FakeInvoices:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def preload(self, keys: Sequence[tuple[str, str]], accounts: Sequence[str]) -> None:
        return None  # everything is in memory

    async def flush(self) -> None:
        return None

    async def synced(self, account_id: str, invoice_number: str, version: InvoiceVersion) -> bool | None:
        row = self.s.invoices.get((account_id, invoice_number))
        if row is not None and row["synced"] and row["erp_version"] >= version.erp_version:
            return None
        was = False if row is None else bool(row["restricted"])
        new = {f.name: getattr(version, f.name) for f in fields(version)}
        self.s.invoices[(account_id, invoice_number)] = {
            "registered": False,
            **(row or {}),
            **new,
            "synced": True,
            "closed": version.erp_status != "open",
        }
        return was

    async def account_balance_payment(self, account_id: str, allowed: bool) -> bool:
        if self.s.accounts.get(account_id) == allowed:
            return False
        self.s.accounts[account_id] = allowed
        return True

    async def registration(
        self, account_id: str, invoice_number: str, *, erp_version: int, registered: bool
    ) -> None:
        row = self.s.invoices.setdefault(
            (account_id, invoice_number), {"synced": False, "erp_version": -1, "registration_version": -1}
        )
        if row.get("registration_version", -1) <= erp_version:
            row.update(registered=registered, registration_version=erp_version)

    async def closed(self, account_id: str, invoice_number: str, *, erp_version: int) -> None:
        row = self.s.invoices.setdefault((account_id, invoice_number), {"synced": False, "erp_version": -1})
        if row["erp_version"] <= erp_version:
            row.update(closed=True, erp_version=erp_version)

    async def account_views(self, wanted: Sequence[tuple[str, list[str] | None]]) -> dict[str, AccountView]:
        views = {}
        for account in {a for a, _ in wanted}:
            named = [n for a, numbers in wanted if a == account and numbers is not None for n in numbers]
            whole = any(a == account and numbers is None for a, numbers in wanted)
            own = {
                n: self._facts(account, n)
                for (a, n), row in self.s.invoices.items()
                if a == account and row["synced"] and (whole or n in named)
            }
            foreign = {
                n for (a, n), row in self.s.invoices.items() if a != account and row["synced"] and n in named
            }
            known = any(a == account and row["synced"] for (a, _), row in self.s.invoices.items())
            views[account] = AccountView(known=known, invoices=own, foreign=frozenset(foreign - set(own)))
        return views

    def _facts(self, account: str, number: str) -> InvoiceFacts:
        row = self.s.invoices[(account, number)]
        mine = [a for a in self.s.allocations if (a.account_id, a.invoice_number) == (account, number)]
        return InvoiceFacts(
            invoice_number=number,
            currency=row["currency"],
            open_amount_minor=row["open_amount_minor"],
            erp_status=row["erp_status"],
            closed=row["closed"],
            billing_country=row["billing_country"],
            registered=row["registered"],
            unposted_succeeded_minor=sum(
                a.amount_minor for a in mine if a.succeeded and str(a.payment_id) not in row["posted_refs"]
            ),
            pending=any(a.is_open for a in mine),
        )


class FakeCommands:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def get_many(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], StoredCommand]:
        return {k: self.s.commands[k] for k in keys if k in self.s.commands}

    async def answered(self, answered: Answered) -> None:
        key = (answered.account_id, answered.key)
        if key in self.s.commands:
            raise KeyError(f"unique violation: {key}")
        self.s.commands[key] = answered.stored


class FakePayments:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def write_run(
        self, opened: Sequence[NewPayment], answered: Sequence[Answered], *, ttl_s: int
    ) -> bool:
        self.s.runs_written += 1
        race, self.s.before_write = self.s.before_write, None
        if race is not None:
            race(self.s)
        taken = {(a.account_id, a.invoice_number) for a in self.s.allocations if a.is_open}
        wanted = [(p.account_id, n) for p in opened for n, _ in p.allocations]
        keys = [(a.account_id, a.key) for a in answered]
        if taken & set(wanted) or len(set(wanted)) < len(wanted) or set(keys) & set(self.s.commands):
            return False
        for p in opened:
            self.s.payments[p.payment_id] = PaymentRow(
                Payment(
                    payment_id=p.payment_id,
                    account_id=p.account_id,
                    idempotency_key=p.idempotency_key,
                    status=PaymentStatus.REQUESTED,
                    currency=p.currency,
                    total_minor=p.total_minor,
                    method=p.method,
                    scope=p.scope,
                    command_event_id=p.command_event_id,
                    correlation_id=p.correlation_id,
                    checkout_id=None,
                    expires_at=self.s.later(ttl_s),
                    open_attempts=0,
                    allocations=tuple(sorted(p.allocations)),
                    updated_at=self.s.now,
                ),
                next_attempt_at=self.s.now,
            )
            self.s.allocations += [Allocation(p.payment_id, p.account_id, n, a) for n, a in p.allocations]
        for a in answered:
            self.s.commands[(a.account_id, a.key)] = a.stored
        return True

    async def get_for_update(self, payment_id: UUID) -> Payment | None:
        row = self.s.payments.get(payment_id)
        return None if row is None else row.payment

    async def account_of(self, payment_id: UUID) -> str | None:
        row = self.s.payments.get(payment_id)
        return None if row is None else row.payment.account_id

    async def traces_of(self, payment_ids: Sequence[UUID]) -> dict[UUID, str]:
        return {}

    async def get_many_for_update(self, payment_ids: Sequence[UUID]) -> list[Payment]:
        return [self.s.payment(i) for i in sorted(payment_ids) if i in self.s.payments]

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
    ) -> None:
        row = self.s.payments[payment_id]
        p = row.payment
        _change(
            self.s,
            payment_id,
            status=to,
            updated_at=self.s.now,
            checkout_id=p.checkout_id or checkout_id,
            confirmed_minor=confirmed_minor if confirmed_minor is not None else p.confirmed_minor,
            confirmed_currency=confirmed_currency or p.confirmed_currency,
            provider_payment_ref=provider_payment_ref or p.provider_payment_ref,
        )
        row.end_reason = reason or row.end_reason
        row.checkout_url = checkout_url or row.checkout_url
        if to is not PaymentStatus.REQUESTED:
            row.next_attempt_at = None
        if to not in OPEN:
            for a in self.s.allocations:
                if a.payment_id == payment_id:
                    a.is_open, a.succeeded = False, to is PaymentStatus.SUCCEEDED

    async def checkouts_opened(self, opened: Sequence[tuple[UUID, str, str]]) -> None:
        for payment_id, checkout_id, url in opened:
            to = PaymentStatus.CHECKOUT_OPEN
            await self.move(payment_id, to, checkout_id=checkout_id, checkout_url=url)

    async def note_confirmation(
        self,
        payment_id: UUID,
        *,
        confirmed_minor: int | None,
        confirmed_currency: str | None,
        provider_payment_ref: str | None,
    ) -> None:
        p = self.s.payment(payment_id)
        _change(
            self.s,
            payment_id,
            confirmed_minor=confirmed_minor,
            confirmed_currency=confirmed_currency,
            provider_payment_ref=provider_payment_ref or p.provider_payment_ref,
            updated_at=self.s.now,
        )

    async def keep_checkout_id(self, payment_id: UUID, checkout_id: str) -> None:
        _change(self.s, payment_id, checkout_id=self.s.payment(payment_id).checkout_id or checkout_id)

    async def flag(self, payment_id: UUID, reason: str) -> None:
        _change(self.s, payment_id, flag_reason=reason)

    async def invoices_paid_by_others(self, payment: Payment) -> bool:
        numbers = {n for n, _ in payment.allocations}
        return any(
            a.succeeded
            and a.account_id == payment.account_id
            and a.invoice_number in numbers
            and a.payment_id != payment.payment_id
            for a in self.s.allocations
        )

    async def log_callback(
        self, payment_id: UUID | None, webhook_id: str, provider_event: str, verdict: str, note: str
    ) -> None:
        self.s.callback_log.append((payment_id, webhook_id, provider_event, verdict, note))


class FakeCheckoutQueues:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def claim_to_open(self, *, batch_size: int, lease_s: float) -> list[Payment]:
        due = [
            r
            for r in self.s.payments.values()
            if r.payment.status is PaymentStatus.REQUESTED
            and r.next_attempt_at is not None
            and r.next_attempt_at <= self.s.now
        ][:batch_size]
        for r in due:
            r.next_attempt_at = self.s.later(lease_s)
            _change(self.s, r.payment.payment_id, open_attempts=r.payment.open_attempts + 1)
        return [r.payment for r in due]

    async def open_later(self, payment_id: UUID, delay_s: float) -> None:
        row = self.s.payments[payment_id]
        if row.payment.status is PaymentStatus.REQUESTED:
            row.next_attempt_at = self.s.later(delay_s)

    async def expiring(self, *, batch_size: int) -> list[Payment]:
        open_ = (PaymentStatus.REQUESTED, PaymentStatus.CHECKOUT_OPEN)
        due = [r.payment for r in self.s.payments.values() if r.payment.status in open_]
        return sorted((p for p in due if p.expires_at <= self.s.now), key=lambda p: p.expires_at)[:batch_size]

    async def claim_to_sync(
        self, *, batch_size: int, older_than_s: float, lease_s: float, payment_ids: Sequence[UUID] | None
    ) -> list[ClaimedCheckout]:
        def due(r: PaymentRow) -> bool:
            p = r.payment
            if p.status not in (PaymentStatus.CHECKOUT_OPEN, PaymentStatus.PROCESSING):
                return False
            if p.checkout_id is None or p.flag_reason is not None:
                return False
            if payment_ids is not None:
                return p.payment_id in payment_ids
            assert p.updated_at is not None
            return (
                p.updated_at <= self.s.later(-older_than_s) and (r.sync_next_at or self.s.now) <= self.s.now
            )

        claimed = [r for r in self.s.payments.values() if due(r)][:batch_size]
        for r in claimed:
            r.sync_next_at, r.sync_attempts = self.s.later(lease_s), r.sync_attempts + 1
        return [_claimed(r, r.sync_attempts) for r in claimed]

    async def sync_at(self, due: Sequence[tuple[UUID, float]]) -> None:
        for payment_id, seconds in due:
            row = self.s.payments[payment_id]
            assert row.payment.updated_at is not None
            row.sync_next_at, row.sync_attempts = row.payment.updated_at + timedelta(seconds=seconds), 0

    async def sync_later(self, payment_id: UUID, delay_s: float) -> None:
        self.s.payments[payment_id].sync_next_at = self.s.later(delay_s)

    async def cancel_at_provider(self, payment_id: UUID) -> None:
        row = self.s.payments[payment_id]
        if row.cancel_state is None:
            row.cancel_state, row.cancel_next_at = "due", self.s.now

    async def claim_to_cancel(self, *, batch_size: int, lease_s: float) -> list[ClaimedCheckout]:
        claimed = [
            r
            for r in self.s.payments.values()
            if r.cancel_state == "due"
            and r.cancel_next_at is not None
            and r.cancel_next_at <= self.s.now
            and r.payment.checkout_id is not None
        ][:batch_size]
        for r in claimed:
            r.cancel_next_at, r.cancel_attempts = self.s.later(lease_s), r.cancel_attempts + 1
        return [_claimed(r, r.cancel_attempts) for r in claimed]

    async def cancel_done(self, payment_id: UUID, state: str) -> None:
        row = self.s.payments[payment_id]
        row.cancel_state, row.cancel_next_at = state, None

    async def cancel_later(self, payment_id: UUID, delay_s: float) -> None:
        self.s.payments[payment_id].cancel_next_at = self.s.later(delay_s)


def _change(store: Store, payment_id: UUID, **values: Any) -> None:
    row = store.payments[payment_id]
    row.payment = replace(row.payment, **values)


def _claimed(row: PaymentRow, attempts: int) -> ClaimedCheckout:
    p = row.payment
    assert p.checkout_id is not None and p.updated_at is not None
    return ClaimedCheckout(p.payment_id, p.account_id, p.checkout_id, p.updated_at, attempts)


class FakeRefunds:
    def __init__(self, store: Store) -> None:
        self.s = store

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
        if any(r.payment_id == payment_id for r in self.s.refunds.values()):
            return False
        self.s.refunds[refund_id] = Refund(
            refund_id,
            payment_id,
            account_id,
            amount_minor,
            currency,
            reason_code,
            requested_by,
            "requested",
            None,
            0,
            self.s.payment(payment_id).checkout_id,
            self.s.now,
        )
        self.s.refund_next_at[refund_id] = self.s.now
        return True

    async def reopen_failed(self, payment_id: UUID, refund_id: UUID, requested_by: str) -> bool:
        for old in list(self.s.refunds.values()):
            if old.payment_id == payment_id and old.status == "failed":
                del self.s.refunds[old.refund_id]
                self.s.refunds[refund_id] = replace(
                    old,
                    refund_id=refund_id,
                    requested_by=requested_by,
                    status="requested",
                    provider_refund_id=None,
                    attempts=0,
                    updated_at=self.s.now,
                )
                self.s.refund_next_at[refund_id] = self.s.now
                return True
        return False

    async def get_for_update(self, refund_id: UUID) -> Refund | None:
        refund = self.s.refunds.get(refund_id)
        if refund is None:
            return None
        return replace(refund, checkout_id=self.s.payment(refund.payment_id).checkout_id)

    async def claim(self, *, batch_size: int, lease_s: float) -> list[Refund]:
        due = [
            r
            for r in self.s.refunds.values()
            if r.status in OPEN_REFUND
            and (self.s.refund_next_at.get(r.refund_id) or self.s.later(1)) <= self.s.now
        ][:batch_size]
        for r in due:
            self.s.refunds[r.refund_id] = replace(r, attempts=r.attempts + 1)
            self.s.refund_next_at[r.refund_id] = self.s.later(lease_s)
        return [await self.get_for_update(r.refund_id) for r in due]  # type: ignore[misc]

    async def submitted(self, refund_id: UUID, provider_refund_id: str, *, query_after_s: float) -> None:
        r = self.s.refunds[refund_id]
        if r.status == "requested":
            self.s.refunds[refund_id] = replace(r, status="submitted", provider_refund_id=provider_refund_id)
            self.s.refund_next_at[refund_id] = self.s.later(query_after_s)

    async def retry_later(self, refund_id: UUID, delay_s: float, error: str) -> None:
        if self.s.refunds[refund_id].status in OPEN_REFUND:
            self.s.refund_next_at[refund_id] = self.s.later(delay_s)

    async def settle(self, refund_id: UUID, status: str, *, failure: str | None = None) -> None:
        self.s.refunds[refund_id] = replace(self.s.refunds[refund_id], status=status, updated_at=self.s.now)
        self.s.refund_next_at[refund_id] = None


class FakeWebhooks:
    def __init__(self, store: Store) -> None:
        self.s = store

    async def first_receipt(self, webhook_id: str) -> bool:
        if webhook_id in self.s.webhooks_received:
            return False
        self.s.webhooks_received.add(webhook_id)
        return True


class FakeUnitOfWork:
    def __init__(self, store: Store, config: IntakeConfig) -> None:
        self.store = store
        self.config = config
        self.invoices = FakeInvoices(store)
        self.commands = FakeCommands(store)
        self.payments = FakePayments(store)
        self.checkouts = FakeCheckoutQueues(store)
        self.refunds = FakeRefunds(store)
        self.webhooks = FakeWebhooks(store)
        self.published: list[Envelope] = []

    def publish(self, message: Envelope) -> None:
        self.published.append(message)


class FakeIntake:
    """The store, the consumer's unit of work on it, and workers' units of work; what
    every committed unit of work published, in order."""

    def __init__(self, policies: MerchantPolicies | None = None, *, checkout_ttl_s: int = 900) -> None:
        self.store = Store()
        self.config = IntakeConfig(policies or MerchantPolicies.preset("full-payment-portal"), checkout_ttl_s)
        self.published: list[Envelope] = []

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[UnitOfWork]:
        """One transaction: on an exception the store is as it was and nothing is published."""
        before = copy.deepcopy(self.store)
        uow = FakeUnitOfWork(self.store, self.config)
        try:
            yield uow
        except BaseException:
            self.store.__dict__.update(before.__dict__)
            raise
        self.published += uow.published

    def of_type(self, kind: str) -> list[Envelope]:
        return [m for m in self.published if m.type == kind]
