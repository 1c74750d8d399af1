"""The account balance and its PAY button (seed 000: "visible only when the Aptean Pay
extension is configured and your account balance is greater than $0.00").

The read model's summary says, per currency, whether account PAY shows, and hides it
while an invoice it would cover is pending or not yet sent for payment processing
(payment-intake refuses the payment then). The portal also checks its own page of
invoices, which may be newer than the summary, and names the invoices that hold PAY back
rather than offer a button whose every press is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from payments_portal_client.read_model import AccountSummary, InvoiceOut, NotPayableReason, PayStatus

from .money import show_money
from .pay_column import not_sent_message, pending_message
from .portal import Style

NOT_SENT = (NotPayableReason.not_registered, NotPayableReason.registration_failed)
# The read model hides account PAY for these too; the portal names the invoices that hold
# it, or says it in general when its own page of invoices is older than the summary.
HELD_BACK = {
    "payment_pending": "A payment against this account is already pending.",
    "not_registered": "Some invoices have not been sent for payment processing yet. Please try again later.",
}


@dataclass(frozen=True)
class Balance:
    currency: str
    amount_minor: int
    text: str
    pay: bool  # the PAY button shows
    note: str | None = None  # why PAY is held back while the balance is above zero


def balances(summary: AccountSummary | None, invoices: Sequence[InvoiceOut], style: Style) -> list[Balance]:
    if summary is None:
        return []
    shown = []
    for b in summary.balances:
        amount, text = b.balance.amount_minor, show_money(b.balance.amount_minor, b.currency)
        if style != Style.FULL_PAYMENT:
            shown.append(Balance(b.currency, amount, text, pay=False))
            continue
        owing = [i for i in invoices if i.currency == b.currency and i.balance.amount_minor > 0]
        held = held_back(owing)
        if not b.pay_button and b.pay_button_reason not in HELD_BACK:
            shown.append(Balance(b.currency, amount, text, pay=False))
            continue
        if not b.pay_button and held is None:
            held = HELD_BACK[str(b.pay_button_reason)]
        shown.append(Balance(b.currency, amount, text, pay=held is None, note=held))
    return shown


def held_back(owing: Iterable[InvoiceOut]) -> str | None:
    """Why payment-intake would refuse to take these invoices' balance now, if it would."""
    owing = list(owing)
    pending = [i.invoice_number for i in owing if i.pay_status == PayStatus.pending]
    if pending:
        return pending_message(*pending)
    not_sent = [i.invoice_number for i in owing if i.not_payable_reason in NOT_SENT]
    if not_sent:
        return not_sent_message(*not_sent)
    return None


def refusal(shown: Sequence[Balance], currency: str | None) -> str | None:
    """The message instead of an account-balance payment, or None when PAY may go ahead."""
    owed = [b for b in shown if b.amount_minor > 0]
    if currency is None and len(owed) > 1:
        return "Your account has balances in several currencies: choose which one to pay."
    chosen = next((b for b in owed if currency is None or b.currency == currency), None)
    if chosen is None:
        return "Your account has no balance to pay."
    if chosen.pay:
        return None
    return chosen.note or "Paying the whole account balance is not available here: pay invoices one by one."
