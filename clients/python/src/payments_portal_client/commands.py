"""Pay commands as a portal backend sends them: the shared contracts, a fresh or given
idempotency key, and the account id as the Kafka key."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from payments_contracts.money import Money
from payments_contracts.payments import (
    CancelCheckout,
    CancelCheckoutPayload,
    PayAccountBalance,
    PayAccountBalancePayload,
    PayInvoice,
    PayInvoicePayload,
    PaymentMethod,
    PaySelectedInvoices,
    PaySelectedInvoicesPayload,
    SelectedInvoice,
)

DEFAULT_PRODUCER = "portal-backend"


def new_idempotency_key() -> str:
    # The canonical 8-4-4-4-12 form: payment-intake refuses input holding 13+ digits that
    # pass Luhn, which a bare hex UUID sometimes does; the dashed form is exempt.
    return f"portal-{uuid.uuid4()}"


def pay_invoice(
    account_id: str,
    invoice_number: str,
    method: PaymentMethod,
    *,
    amount: Money | None = None,
    idempotency_key: str | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> PayInvoice:
    """Pay one invoice; `amount` None pays its whole balance."""
    return PayInvoice.originating(
        producer=producer,
        account_id=account_id,
        payload=PayInvoicePayload(
            idempotency_key=idempotency_key or new_idempotency_key(),
            invoice_number=invoice_number,
            amount=amount,
            method=method,
        ),
    )


def pay_selected(
    account_id: str,
    invoices: Sequence[tuple[str, Money | None]],
    method: PaymentMethod,
    *,
    idempotency_key: str | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> PaySelectedInvoices:
    """Pay several invoices in one payment: (invoice number, amount or None for its balance)."""
    return PaySelectedInvoices.originating(
        producer=producer,
        account_id=account_id,
        payload=PaySelectedInvoicesPayload(
            idempotency_key=idempotency_key or new_idempotency_key(),
            invoices=[SelectedInvoice(invoice_number=n, amount=a) for n, a in invoices],
            method=method,
        ),
    )


def pay_account_balance(
    account_id: str,
    method: PaymentMethod,
    *,
    currency: str | None = None,
    idempotency_key: str | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> PayAccountBalance:
    return PayAccountBalance.originating(
        producer=producer,
        account_id=account_id,
        payload=PayAccountBalancePayload(
            idempotency_key=idempotency_key or new_idempotency_key(),
            currency=currency,
            method=method,
        ),
    )


def cancel_checkout(
    account_id: str,
    payment_id: uuid.UUID,
    *,
    idempotency_key: str | None = None,
    producer: str = DEFAULT_PRODUCER,
) -> CancelCheckout:
    return CancelCheckout.originating(
        producer=producer,
        account_id=account_id,
        payload=CancelCheckoutPayload(
            idempotency_key=idempotency_key or new_idempotency_key(),
            payment_id=payment_id,
        ),
    )


Command = PayInvoice | PaySelectedInvoices | PayAccountBalance | CancelCheckout
