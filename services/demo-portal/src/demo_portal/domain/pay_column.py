"""What the portal shows for an invoice: its Pay column, and whether the Pay dialog may
open (seed 000: not when the invoice was not sent for payment processing, nor when a
payment against it is already pending)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from payments_portal_client.read_model import InvoiceOut, NotPayableReason, PayStatus

from .portal import Style


class Cell(StrEnum):
    PAY = "pay"
    PENDING = "pending"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    NOT_PAYABLE = "not_payable"


LABELS = {
    Cell.PAY: "Pay",
    Cell.PENDING: "Pending",
    Cell.PARTIALLY_PAID: "Partially paid",
    Cell.PAID: "Paid",
    Cell.NOT_PAYABLE: "Not payable",
}

REASONS = {
    NotPayableReason.not_registered: "Not yet available for online payment",
    NotPayableReason.registration_failed: "Not available for online payment",
    NotPayableReason.zero_balance: "Nothing to pay",
    NotPayableReason.cancelled: "Cancelled",
    NotPayableReason.closed: "Closed",
    NotPayableReason.restricted: "Pay through your distributor",
}


@dataclass(frozen=True)
class PayCell:
    cell: Cell
    label: str
    payable: bool  # the Pay button shows / the row can be selected
    reason: str | None = None  # why not payable, for the portal's note


def pay_cell(invoice: InvoiceOut, style: Style) -> PayCell:
    status, has_balance = invoice.pay_status, invoice.balance.amount_minor > 0
    if status == PayStatus.pending:
        return PayCell(Cell.PENDING, LABELS[Cell.PENDING], payable=False)
    if status == PayStatus.paid:
        return PayCell(Cell.PAID, LABELS[Cell.PAID], payable=False)
    if status == PayStatus.partially_paid:
        return PayCell(Cell.PARTIALLY_PAID, LABELS[Cell.PARTIALLY_PAID], payable=invoice.pay_button)
    if status == PayStatus.payable:
        return PayCell(Cell.PAY, LABELS[Cell.PAY], payable=invoice.pay_button)
    reason = invoice.not_payable_reason
    if reason == NotPayableReason.restricted and invoice.restriction and invoice.restriction.message:
        return PayCell(Cell.NOT_PAYABLE, LABELS[Cell.NOT_PAYABLE], False, invoice.restriction.message)
    # Seed 000 offers Pay on every invoice with a balance and says why only when it is
    # selected: an invoice not yet sent for payment processing answers with an error.
    if style == Style.FULL_PAYMENT and reason == NotPayableReason.not_registered and has_balance:
        return PayCell(Cell.PAY, LABELS[Cell.PAY], payable=True)
    return PayCell(Cell.NOT_PAYABLE, LABELS[Cell.NOT_PAYABLE], False, REASONS.get(reason) if reason else None)


def not_sent_message(*numbers: str) -> str:
    if len(numbers) == 1:
        return f"Invoice {numbers[0]} has not been sent for payment processing yet. Please try again later."
    return (
        f"Invoices {', '.join(numbers)} have not been sent for payment processing yet."
        " Please try again later."
    )


def pending_message(*numbers: str) -> str:
    invoices = f"invoice {numbers[0]}" if len(numbers) == 1 else f"invoices {', '.join(numbers)}"
    return f"A payment against {invoices} is already pending."


def before_dialog(invoice: InvoiceOut) -> str | None:
    """The error the portal shows instead of the Pay dialog, or None when it may open."""
    number = invoice.invoice_number
    if invoice.not_payable_reason in (NotPayableReason.not_registered, NotPayableReason.registration_failed):
        return not_sent_message(number)
    if invoice.pay_status == PayStatus.pending:
        return pending_message(number)
    if invoice.balance.amount_minor <= 0:
        return f"Invoice {number} has no remaining balance to pay."
    if invoice.not_payable_reason == NotPayableReason.restricted and invoice.restriction:
        return invoice.restriction.message or "This invoice cannot be paid online."
    if not invoice.pay_button:
        return f"Invoice {number} cannot be paid online."
    return None


@dataclass(frozen=True)
class DetailButton:
    label: str
    action: str  # "pay": the seed 000 Pay dialog; "make-a-payment": seed 003's Make a Payment


def detail_button(invoice: InvoiceOut, style: Style) -> DetailButton | None:
    """The one button of the invoice detail view, if it has one."""
    if invoice.pay_button_reason == "provider_not_configured":
        return None
    if style == Style.FULL_PAYMENT:
        # Seed 000: shown whenever a balance remains; the check before the dialog then
        # says why an invoice cannot be paid (not sent yet, already pending).
        return DetailButton("Pay", "pay") if invoice.balance.amount_minor > 0 else None
    # Seed 003: MAKE A PAYMENT opens Make a Payment with this invoice and its amount due.
    return DetailButton("MAKE A PAYMENT", "make-a-payment") if pay_cell(invoice, style).payable else None
