"""Remittance (check, ACH, wire) is paid outside the portal: a pay command with method
`remittance` is answered with the merchant's details for the chosen channel, in its own
event (`payment.remittance_instructions`). No payment is opened; the invoices stay
payable until the ERP posts the money it received."""

from __future__ import annotations

from dataclasses import dataclass

from payments_contracts.remittance import CheckDetails, RemittanceChannel, RemittanceDetails

from .intake import Accepted
from .policy import PaymentPolicy
from .rejections import Reason, Rejection


@dataclass(frozen=True)
class RemittanceAnswer:
    accepted: Accepted
    channel: RemittanceChannel
    reference: str
    details: RemittanceDetails
    message: str


def details_for(policy: PaymentPolicy, configured: RemittanceDetails | None) -> RemittanceDetails:
    """The merchant's configured details, else what a policy preset knows (a check payee)."""
    if configured is not None:
        return configured
    return RemittanceDetails(check=CheckDetails(payee=policy.remittance_payee or "the merchant"))


def reference_for(account_id: str, invoice_numbers: list[str]) -> str:
    return " ".join([account_id, *invoice_numbers])


def answer_remittance(
    accepted: Accepted,
    channel: RemittanceChannel,
    account_id: str,
    details: RemittanceDetails,
    amount: str,
    *,
    configured: bool = True,
) -> RemittanceAnswer | Rejection:
    numbers = [n for n, _ in accepted.allocations]
    reference = reference_for(account_id, numbers)
    if not configured and details.check is not None:
        # Only a payee is known (a policy preset, no details in the merchant file): the
        # customer pays by any channel and asks the payee for the bank details.
        message = (
            f"Pay {amount} to {details.check.payee} by {channel.upper() if channel == 'ach' else channel},"
            f" quoting {reference} as the remittance reference; ask {details.check.payee} for the bank"
            " details."
        )
        return RemittanceAnswer(accepted, channel, reference, details, message)
    if channel not in details.channels():
        return Rejection(
            Reason.METHOD_NOT_ALLOWED,
            f"This payment method is not available here. Available: {', '.join(details.channels())}.",
        )
    return RemittanceAnswer(
        accepted, channel, reference, details, instructions(channel, details, amount, reference)
    )


def instructions(channel: str, details: RemittanceDetails, amount: str, reference: str) -> str:
    """The chosen channel's details as one text a portal can show."""
    quote = f"quoting {reference} as the remittance reference."
    if channel == "check":
        check = details.check
        assert check is not None
        where = ""
        if check.mailing_address is not None:
            a = check.mailing_address
            lines = [
                a.name,
                a.line1,
                a.line2,
                f"{a.city} {a.region or ''} {a.postal_code}".replace("  ", " "),
                a.country,
            ]
            where = " Mail it to " + ", ".join(line for line in lines if line) + ","
        return f"Pay {amount} by check payable to {check.payee}.{where} {quote}"
    bank = details.ach if channel == "ach" else details.wire
    assert bank is not None
    route = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("routing number", bank.routing_number),
            ("SWIFT/BIC", bank.swift_bic),
            ("IBAN", bank.iban),
        )
        if value
    )
    kind = "ACH transfer" if channel == "ach" else "wire transfer"
    return (
        f"Pay {amount} by {kind} to {bank.account_name}, account {bank.account_number} at "
        f"{bank.bank_name} ({route}), {quote}"
    )
