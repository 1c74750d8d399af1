"""Invoice facts from invoice-sync: our copy of each invoice (newest ERP version wins), and
what the read model must learn from the policy owner when the policy's answer changes."""

from __future__ import annotations

from payment_intake.domain.intake import country_restriction
from payment_intake.domain.rejections import Reason, Rejection
from payment_intake.messages import account_balance_payment_changed, restriction_changed
from payment_intake.unit_of_work import InvoiceVersion, UnitOfWork
from payments_contracts.invoices import (
    InvoiceClosed,
    InvoiceRegistered,
    InvoiceRegistrationFailed,
    InvoiceSynced,
)

ACCOUNT_BALANCE_NOT_ALLOWED = Rejection(
    Reason.ACCOUNT_BALANCE_NOT_ALLOWED,
    "Paying the whole account balance is not available: select the invoices to pay.",
)


async def on_invoice_synced(event: InvoiceSynced, uow: UnitOfWork) -> None:
    p = event.payload
    policy = uow.config.policies.for_account(event.account_id)
    restriction = country_restriction(policy, p.billing_country)
    version = InvoiceVersion(
        erp_version=p.erp_version,
        currency=p.open_amount.currency,
        total_minor=p.total.amount_minor,
        open_amount_minor=p.open_amount.amount_minor,
        erp_status=p.erp_status,
        billing_country=p.billing_country,
        posted_refs=[posted.reference for posted in p.posted_payments],
        restricted=restriction is not None,
    )
    was_restricted = await uow.invoices.synced(event.account_id, p.invoice_number, version)
    # Whether the account-level PAY button may show: announced when an account is first
    # seen and whenever its policy's answer changes.
    if await uow.invoices.account_balance_payment(event.account_id, policy.account_balance):
        why_not = None if policy.account_balance else ACCOUNT_BALANCE_NOT_ALLOWED
        uow.publish(account_balance_payment_changed(event, why_not))
    if was_restricted is None or was_restricted == (restriction is not None):
        return  # a stale version, or nothing changed for the read model
    # The policy is ours, so the read model learns from us that the invoice cannot be paid
    # online (or can again), with the same code and message a pay command would get.
    uow.publish(restriction_changed(event, p.invoice_number, restriction))


async def on_invoice_registered(event: InvoiceRegistered, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.registration(
        event.account_id, p.invoice_number, erp_version=p.erp_version, registered=True
    )


async def on_invoice_registration_failed(event: InvoiceRegistrationFailed, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.registration(
        event.account_id, p.invoice_number, erp_version=p.erp_version, registered=False
    )


async def on_invoice_closed(event: InvoiceClosed, uow: UnitOfWork) -> None:
    p = event.payload
    await uow.invoices.closed(event.account_id, p.invoice_number, erp_version=p.erp_version)
