"""Remittance details: how a customer pays a merchant offline (check, ACH, wire).

They come from the merchant file (`merchants.<name>.remittance`), are sent in
`payment.remittance_instructions` and served per account by the read-model API
(`GET /v1/accounts/{account_id}/remittance`), so a portal can show them before any
command.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .envelope import Payload

RemittanceChannel = Literal["check", "ach", "wire"]


class MailingAddress(Payload):
    name: str = Field(description="Addressee line, e.g. 'Acme Corp, Accounts Receivable'")
    line1: str = Field(description="Street address or PO box")
    line2: str | None = Field(None, description="Suite, floor, attention line")
    city: str = Field(description="City")
    region: str | None = Field(None, description="State or province")
    postal_code: str = Field(description="ZIP or postal code")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2")


class CheckDetails(Payload):
    payee: str = Field(description="Make the check payable to")
    mailing_address: MailingAddress | None = Field(
        None, description="Where to mail the check; absent only when the merchant configured none"
    )


class BankTransferDetails(Payload):
    bank_name: str = Field(description="The beneficiary's bank")
    account_name: str = Field(description="The beneficiary: the merchant's account holder name")
    account_number: str = Field(description="The beneficiary's account number at that bank")
    routing_number: str | None = Field(None, description="ABA routing number (US ACH and domestic wires)")
    swift_bic: str | None = Field(None, description="SWIFT/BIC for international wires")
    iban: str | None = Field(None, description="IBAN, where the bank has one")


class RemittanceDetails(Payload):
    """Every offline channel a merchant accepts; a channel it does not accept is null."""

    check: CheckDetails | None = Field(None, description="Pay by check: payee and mailing address")
    ach: BankTransferDetails | None = Field(None, description="Pay by ACH transfer (US)")
    wire: BankTransferDetails | None = Field(None, description="Pay by wire transfer")

    def channels(self) -> list[str]:
        return [c for c in ("check", "ach", "wire") if getattr(self, c) is not None]


class AccountRemittance(Payload):
    """GET /v1/accounts/{account_id}/remittance: the account's merchant's remittance details."""

    account_id: str = Field(description="ERP customer account id")
    reference: str = Field(
        description="Quote this with every remittance: the account id; add the invoice numbers paid"
    )
    details: RemittanceDetails = Field(description="Each channel the account's merchant accepts")
