"""Messages payment-intake's handler unit tests send."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from uuid import UUID

from payments_contracts.invoices import (
    InvoiceRegistered,
    InvoiceRegisteredPayload,
    InvoiceSynced,
    InvoiceSyncedPayload,
)
from payments_contracts.money import Money
from payments_contracts.payments import (
    BillingAddress,
    CancelCheckout,
    CancelCheckoutPayload,
    GuestCheckout,
    PayInvoice,
    PayInvoicePayload,
    ProviderCallbackPayload,
    ProviderCallbackReceived,
)


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
    account: str, number: str, open_minor: int, *, version: int = 1, country: str = "US"
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
            total=usd(open_minor),
            open_amount=usd(open_minor),
            erp_status="open",
            billing_country=country,
            posted_payments=[],
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


def pay_invoice(
    account: str, number: str, *, key: str | None = None, amount: int | None = None
) -> PayInvoice:
    return PayInvoice.originating(
        producer="portal",
        account_id=account,
        payload=PayInvoicePayload(
            idempotency_key=key or str(uuid.uuid4()),
            invoice_number=number,
            amount=None if amount is None else usd(amount),
            method=guest(),
        ),
    )


def cancel(account: str, payment_id: UUID, *, key: str | None = None) -> CancelCheckout:
    return CancelCheckout.originating(
        producer="portal",
        account_id=account,
        payload=CancelCheckoutPayload(idempotency_key=key or str(uuid.uuid4()), payment_id=payment_id),
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
