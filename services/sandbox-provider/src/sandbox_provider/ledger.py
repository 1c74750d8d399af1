"""What the sandbox provider knows: registered invoices, checkout sessions, injected faults."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

FaultMode = Literal["slow", "error", "refuse"]


@dataclass
class RegisteredInvoice:
    provider_invoice_id: str
    account_id: str
    invoice_number: str
    amount_minor: int
    currency: str
    status: Literal["registered", "withdrawn"] = "registered"


@dataclass
class Checkout:
    checkout_id: str
    payment_id: str
    account_id: str
    amount_minor: int
    currency: str
    method: str
    invoices: list[dict[str, object]]
    expires_at: datetime
    status: Literal["open", "processing", "succeeded", "failed", "expired", "cancelled"] = "open"
    captured_minor: int | None = None  # what the provider took, once it succeeded
    provider_payment_ref: str | None = None
    reason: str | None = None
    provider: Literal["sandbox", "stripe"] = "sandbox"  # which API opened it (Stripe mode: /stripe)

    def view(self) -> dict[str, object]:
        """What the provider's query API answers about a checkout."""
        return {
            "checkout_id": self.checkout_id,
            "payment_id": self.payment_id,
            "account_id": self.account_id,
            "status": self.status,
            "amount_minor": self.captured_minor if self.captured_minor is not None else self.amount_minor,
            "currency": self.currency,
            "provider_payment_ref": self.provider_payment_ref,
            "reason": self.reason,
        }


@dataclass
class Refund:
    refund_id: str  # the merchant's id: the idempotency key
    provider_refund_id: str
    checkout_id: str
    payment_id: str
    account_id: str
    amount_minor: int
    currency: str
    status: Literal["pending", "succeeded", "failed"] = "pending"
    reason: str | None = None


@dataclass
class Fault:
    mode: FaultMode
    remaining: int  # -1: until cleared
    delay_s: float = 0.0


@dataclass
class Ledger:
    invoices: dict[tuple[str, str], RegisteredInvoice] = field(default_factory=dict)
    checkouts: dict[str, Checkout] = field(default_factory=dict)
    by_payment: dict[str, str] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    refunds: dict[str, Refund] = field(default_factory=dict)
    registration_calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def take_fault(self, target: str) -> Fault | None:
        fault = self.faults.get(target)
        if fault is None:
            return None
        if fault.remaining > 0:
            fault.remaining -= 1
            if fault.remaining == 0:
                del self.faults[target]
        return fault

    def register(
        self, account_id: str, invoice_number: str, amount_minor: int, currency: str
    ) -> RegisteredInvoice:
        key = (account_id, invoice_number)
        self.registration_calls[key] += 1
        existing = self.invoices.get(key)
        if existing is not None:
            existing.amount_minor, existing.currency, existing.status = amount_minor, currency, "registered"
            return existing
        invoice = RegisteredInvoice(
            f"inv_{uuid.uuid4().hex[:16]}", account_id, invoice_number, amount_minor, currency
        )
        self.invoices[key] = invoice
        return invoice

    def open_checkout(
        self,
        *,
        payment_id: str,
        account_id: str,
        amount_minor: int,
        currency: str,
        method: str,
        invoices: list[dict[str, object]],
        ttl_s: int,
        provider: Literal["sandbox", "stripe"] = "sandbox",
    ) -> Checkout:
        """Idempotent by payment id: the same payment gets the same checkout."""
        if payment_id in self.by_payment:
            return self.checkouts[self.by_payment[payment_id]]
        checkout = Checkout(
            provider=provider,
            checkout_id=f"cs_{uuid.uuid4().hex[:20]}",
            payment_id=payment_id,
            account_id=account_id,
            amount_minor=amount_minor,
            currency=currency,
            method=method,
            invoices=invoices,
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        )
        self.checkouts[checkout.checkout_id] = checkout
        self.by_payment[payment_id] = checkout.checkout_id
        return checkout

    def refund(self, refund_id: str, checkout: Checkout, amount_minor: int) -> tuple[Refund, bool]:
        """Idempotent by the merchant's refund id: (the refund, whether it is new)."""
        existing = self.refunds.get(refund_id)
        if existing is not None:
            return existing, False
        refund = Refund(
            refund_id=refund_id,
            provider_refund_id=f"re_{uuid.uuid4().hex[:20]}",
            checkout_id=checkout.checkout_id,
            payment_id=checkout.payment_id,
            account_id=checkout.account_id,
            amount_minor=amount_minor,
            currency=checkout.currency,
        )
        self.refunds[refund_id] = refund
        return refund, True

    def refundable_minor(self, checkout: Checkout) -> int:
        taken = checkout.captured_minor or 0
        refunded = sum(
            r.amount_minor
            for r in self.refunds.values()
            if r.checkout_id == checkout.checkout_id and r.status != "failed"
        )
        return taken - refunded
