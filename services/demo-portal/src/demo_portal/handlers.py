"""The portal's use cases: show an account, check an invoice before the Pay dialog, pay,
cancel. Reads go to the read-model API with the merchant's key; commands go out
through FastStream and come back as typed outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from payments_contracts.money import Money
from payments_contracts.payments import (
    BillingAddress,
    CardOnline,
    GuestCheckout,
    PayerPortal,
    PaymentMethod,
    Remittance,
)
from payments_portal_client import (
    Accepted,
    Ended,
    NotFound,
    Outcome,
    OutcomeTimeout,
    ReadModelClient,
    Rejected,
    RemittanceDetails,
)
from payments_portal_client import commands as build
from payments_portal_client.read_model import AccountSummary, InvoiceOut

from .command_channel import CommandChannel
from .domain.account import balances, refusal
from .domain.money import BadAmount, parse_amount
from .domain.pay_column import before_dialog
from .domain.portal import Merchant, Portals
from .domain.remittance import RemittanceView, remittance_view
from .settings import SERVICE


class UnknownAccount(LookupError):
    pass


@dataclass(frozen=True)
class PayItem:
    invoice_number: str
    amount: str | None = None  # as typed; None pays the whole balance


@dataclass(frozen=True)
class PayOrder:
    items: tuple[PayItem, ...]
    method: Literal["guest_checkout", "payer_portal", "card", "remittance"]
    billing: BillingAddress | None = None
    name_on_card: str | None = None
    channel: Literal["check", "ach", "wire"] | None = None
    selected: bool = False  # PAY SELECTED (seed 003) rather than one invoice's Pay


@dataclass(frozen=True)
class Answer:
    """What the page does next: open the checkout, show an error, show remittance details."""

    outcome: Literal["accepted", "rejected", "remittance", "ended", "timeout"]
    message: str | None = None
    reason_code: str | None = None
    checkout_url: str | None = None
    payment_id: str | None = None
    invoice_numbers: tuple[str, ...] = ()
    remittance: RemittanceView | None = None


@dataclass
class Portal:
    portals: Portals
    messaging: CommandChannel
    read_api_url: str
    timeout_s: float
    readers: dict[str, ReadModelClient] = field(default_factory=dict)

    def merchant(self, account_id: str) -> Merchant:
        merchant = self.portals.merchant_of(account_id)
        if merchant is None:
            raise UnknownAccount(account_id)
        return merchant

    def reader(self, account_id: str) -> ReadModelClient:
        merchant = self.merchant(account_id)
        if merchant.name not in self.readers:
            self.readers[merchant.name] = ReadModelClient(self.read_api_url, merchant.api_key)
        return self.readers[merchant.name]

    async def close(self) -> None:
        for reader in self.readers.values():
            await reader.close()


async def account(portal: Portal, account_id: str) -> tuple[list[InvoiceOut], AccountSummary | None]:
    reader = portal.reader(account_id)
    try:
        return await reader.invoices(account_id), await reader.summary(account_id)
    except NotFound:
        return [], None


async def check_before_dialog(portal: Portal, account_id: str, invoice_number: str) -> InvoiceOut | str:
    """The invoice, fresh from the read model, or the error to show instead of the dialog."""
    try:
        invoice = await portal.reader(account_id).invoice(account_id, invoice_number)
    except NotFound:
        return f"Invoice {invoice_number} could not be found."
    return before_dialog(invoice) or invoice


def _method(order: PayOrder) -> PaymentMethod:
    if order.method == "guest_checkout" and order.billing is not None:
        return GuestCheckout(billing_address=order.billing, name_on_card=order.name_on_card or "")
    if order.method == "payer_portal":
        return PayerPortal()
    if order.method == "remittance":
        return Remittance(channel=order.channel or "check")
    return CardOnline(name_on_card=order.name_on_card or None, billing_address=order.billing)


async def pay(portal: Portal, account_id: str, order: PayOrder) -> Answer:
    portal.merchant(account_id)
    if order.method == "guest_checkout" and order.billing is None:
        return Answer("rejected", "Enter your billing address.", reason_code="invalid_billing_details")
    try:
        amounts = await _amounts(portal, account_id, order.items)
        method = _method(order)
    except BadAmount as bad:
        return Answer("rejected", str(bad), reason_code="invalid_amount")
    command: build.Command
    if order.selected or len(order.items) > 1:
        command = build.pay_selected(account_id, amounts, method, producer=SERVICE)
    else:
        number, amount = amounts[0]
        command = build.pay_invoice(account_id, number, method, amount=amount, producer=SERVICE)
    return await _send(portal, command)


async def pay_account_balance(portal: Portal, account_id: str, currency: str | None = None) -> Answer:
    """Account PAY, checked against the read model first: a payment it shows would be
    refused is never sent, so the page opens no payer-portal tab for it."""
    merchant = portal.merchant(account_id)
    invoices, summary = await account(portal, account_id)
    refused = refusal(balances(summary, invoices, merchant.style), currency)
    if refused is not None:
        return Answer("rejected", refused, reason_code="account_pay_not_offered")
    command = build.pay_account_balance(account_id, PayerPortal(), currency=currency, producer=SERVICE)
    return await _send(portal, command)


async def cancel(portal: Portal, account_id: str, payment_id: UUID) -> Answer:
    portal.merchant(account_id)
    return await _send(portal, build.cancel_checkout(account_id, payment_id, producer=SERVICE))


async def _amounts(
    portal: Portal, account_id: str, items: tuple[PayItem, ...]
) -> list[tuple[str, Money | None]]:
    if not items:
        raise BadAmount("Select the invoices to pay.")
    typed = [i for i in items if i.amount not in (None, "")]
    currencies: dict[str, str] = {}
    if typed:
        for invoice in await portal.reader(account_id).invoices(account_id):
            currencies[invoice.invoice_number] = invoice.currency
    return [
        (
            i.invoice_number,
            parse_amount(i.amount, currencies.get(i.invoice_number, "USD")) if i.amount else None,
        )
        for i in items
    ]


async def _send(portal: Portal, command: build.Command) -> Answer:
    try:
        outcome = await portal.messaging.send(command, until_checkout=True, timeout_s=portal.timeout_s)
    except OutcomeTimeout:
        return Answer("timeout", "The payment service did not answer in time. Please try again.")
    return answer(outcome)


def answer(outcome: Outcome) -> Answer:
    if isinstance(outcome, Accepted):
        return Answer(
            "accepted",
            checkout_url=outcome.checkout_url,
            payment_id=str(outcome.payment_id),
            invoice_numbers=tuple(a.invoice_number for a in outcome.allocations),
        )
    if isinstance(outcome, RemittanceDetails):
        view = remittance_view(
            outcome.channel, outcome.amount, outcome.reference, outcome.details, outcome.message
        )
        return Answer("remittance", outcome.message, invoice_numbers=outcome.invoice_numbers, remittance=view)
    if isinstance(outcome, Rejected):
        return Answer(
            "rejected", outcome.message, outcome.reason_code, invoice_numbers=outcome.invoice_numbers
        )
    if isinstance(outcome, Ended):
        return Answer("ended", outcome.message, outcome.reason_code, payment_id=str(outcome.payment_id))
    raise TypeError(f"unexpected outcome {outcome!r}")
