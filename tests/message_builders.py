"""The one set of messages tests send payment-intake: invoice facts as invoice-sync
publishes them, provider callbacks as the webhook endpoint records them, and pay
commands built by the portal client's own builders (payments_portal_client.commands),
so a test sends exactly what a portal backend sends."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from payments_contracts.invoices import (
    InvoiceClosed,
    InvoiceClosedPayload,
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
    PostedPayment,
)
from payments_contracts.money import Money
from payments_contracts.payments import (
    BillingAddress,
    CancelCheckout,
    GuestCheckout,
    PayAccountBalance,
    PayerPortal,
    PayInvoice,
    PaySelectedInvoices,
    ProviderCallbackPayload,
    ProviderCallbackReceived,
)
from payments_portal_client import commands


def usd(minor: int) -> Money:
    return Money(amount_minor=minor, currency="USD")


def guest() -> GuestCheckout:
    return GuestCheckout(
        billing_address=BillingAddress(
            email="ap@example.com",
            street="1 Main St",
            country="US",
            postal_code="10001",
            phone_country_code="+1",
            phone_number="212 555 0100",
        ),
        name_on_card="Pat Payer",
    )


def synced(
    account: str,
    number: str,
    open_minor: int,
    *,
    version: int = 1,
    country: str = "US",
    status: str = "open",
    posted: list[tuple[str, int]] | None = None,
    total_minor: int | None = None,
) -> InvoiceSynced:
    return InvoiceSynced.originating(
        producer="test",
        account_id=account,
        payload=InvoiceSyncedPayload(
            invoice_number=number,
            erp_version=version,
            order_number=None,
            po_number=None,
            invoice_date=date(2026, 4, 1),
            due_date=date(2026, 5, 1),
            total=usd(total_minor if total_minor is not None else max(open_minor, 1)),
            open_amount=usd(open_minor),
            erp_status=status,  # type: ignore[arg-type]
            billing_country=country,
            posted_payments=[PostedPayment(reference=r, amount=usd(a)) for r, a in posted or []],
        ),
    )


def registered(account: str, number: str, minor: int, *, version: int = 1) -> InvoiceRegistered:
    return InvoiceRegistered.originating(
        producer="test",
        account_id=account,
        payload=InvoiceRegisteredPayload(
            invoice_number=number, erp_version=version, provider_invoice_id=f"inv_{number}", amount=usd(minor)
        ),
    )


def closed(account: str, number: str, *, version: int = 2) -> InvoiceClosed:
    return InvoiceClosed.originating(
        producer="test",
        account_id=account,
        payload=InvoiceClosedPayload(invoice_number=number, erp_version=version, reason="cancelled"),
    )


def pay_invoice(
    account: str, number: str, *, key: str | None = None, amount: int | None = None, method: Any = None
) -> PayInvoice:
    return commands.pay_invoice(
        account,
        number,
        method or guest(),
        amount=None if amount is None else usd(amount),
        idempotency_key=key or str(uuid.uuid4()),
        producer="portal",
    )


def pay_selected(
    account: str, items: list[tuple[str, int | None]], *, key: str | None = None, method: Any = None
) -> PaySelectedInvoices:
    return commands.pay_selected(
        account,
        [(n, None if a is None else usd(a)) for n, a in items],
        method or guest(),
        idempotency_key=key or str(uuid.uuid4()),
        producer="portal",
    )


def pay_balance(account: str, *, key: str | None = None, method: Any = None) -> PayAccountBalance:
    return commands.pay_account_balance(
        account, method or PayerPortal(), idempotency_key=key or str(uuid.uuid4()), producer="portal"
    )


def cancel(account: str, payment_id: UUID, *, key: str | None = None) -> CancelCheckout:
    return commands.cancel_checkout(
        account, payment_id, idempotency_key=key or str(uuid.uuid4()), producer="portal"
    )


def callback(
    account: str,
    payment_id: UUID,
    event: str,
    *,
    amount: int | None = None,
    refund_id: UUID | None = None,
    reason: str | None = None,
) -> ProviderCallbackReceived:
    return ProviderCallbackReceived.originating(
        producer="test",
        account_id=account,
        payload=ProviderCallbackPayload(
            webhook_id=f"msg_{uuid.uuid4().hex}",
            provider_event=event,  # type: ignore[arg-type]
            payment_id=payment_id,
            checkout_id=f"cs_{payment_id.hex[:8]}",
            amount=None if amount is None else usd(amount),
            provider_payment_ref="pi_1" if event == "payment.succeeded" else None,
            reason=reason,
            refund_id=refund_id,
            provider_occurred_at=datetime(2026, 5, 1, tzinfo=UTC),
        ),
    )
