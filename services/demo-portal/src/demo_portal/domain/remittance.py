"""Remittance details (check, ACH, wire) as labelled lines: what to pay, what to quote,
and where the money goes, one fact a line."""

from __future__ import annotations

from dataclasses import dataclass

from payments_contracts.money import Money
from payments_contracts.remittance import BankTransferDetails, CheckDetails, MailingAddress
from payments_contracts.remittance import RemittanceDetails as MerchantRemittance

from .money import show_money

CHANNEL_NAMES = {"check": "check", "ach": "ACH", "wire": "wire"}


@dataclass(frozen=True)
class RemittanceView:
    title: str
    lines: tuple[tuple[str, str], ...]
    note: str | None = None


def remittance_view(
    channel: str | None,
    amount: Money | None,
    reference: str | None,
    details: MerchantRemittance | None,
    message: str,
) -> RemittanceView:
    """The chosen channel's lines. Without structured details (an older payment-intake
    answers with its message only) the message is all there is to show."""
    name = CHANNEL_NAMES.get(channel or "", channel or "")
    title = f"Remittance details ({name})" if name else "Remittance details"
    if details is None or amount is None or channel is None:
        return RemittanceView(title, (), message)
    lines = [("Amount", show_money(amount.amount_minor, amount.currency))]
    if reference:
        lines.append(("Reference", reference))
    if channel == "check" and details.check is not None:
        return RemittanceView(title, (*lines, *_check_lines(details.check)))
    bank = details.ach if channel == "ach" else details.wire if channel == "wire" else None
    if bank is not None:
        return RemittanceView(title, (*lines, *_bank_lines(bank)))
    if details.check is not None:
        # Only a payee is configured: the customer asks it for the bank details.
        payee = details.check.payee
        return RemittanceView(title, (*lines, ("Pay to", payee)), f"Ask {payee} for the bank details.")
    return RemittanceView(title, tuple(lines), message)


def _check_lines(check: CheckDetails) -> list[tuple[str, str]]:
    lines = [("Payable to", check.payee)]
    if check.mailing_address is not None:
        lines.append(("Mail to", address_text(check.mailing_address)))
    return lines


def _bank_lines(bank: BankTransferDetails) -> list[tuple[str, str]]:
    optional = (("Routing number", bank.routing_number), ("SWIFT/BIC", bank.swift_bic), ("IBAN", bank.iban))
    return [
        ("Bank", bank.bank_name),
        ("Account name", bank.account_name),
        ("Account number", bank.account_number),
        *((label, value) for label, value in optional if value),
    ]


def address_text(address: MailingAddress) -> str:
    """A mailing address as it goes on an envelope, one line each."""
    place = ", ".join(
        p for p in (address.city, " ".join(filter(None, (address.region, address.postal_code)))) if p
    )
    return "\n".join(
        line for line in (address.name, address.line1, address.line2, place, address.country) if line
    )
