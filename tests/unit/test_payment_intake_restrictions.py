"""payment-intake announces when the merchant policy starts or stops restricting an invoice
(seed 003: customers in distributor countries pay through their distributor).

The handler runs against the in-memory unit of work (tests/fakes), whose invoice
repository keeps the property the SQL has: a stale ERP version changes nothing.
"""

from __future__ import annotations

from datetime import date

from fakes.payment_intake import FakeUnitOfWork, Store

from payment_intake.domain.intake import (
    AccountView,
    InvoiceFacts,
    PayRequest,
    RequestedInvoice,
    country_restriction,
    decide,
)
from payment_intake.domain.policy import FULL_PAYMENT_PORTAL, PARTIAL_MULTI_PORTAL, MerchantPolicies
from payment_intake.domain.rejections import Reason, Rejection
from payment_intake.handlers.invoices import on_invoice_synced
from payment_intake.unit_of_work import IntakeConfig
from payments_contracts.invoices import InvoiceSynced, InvoiceSyncedPayload
from payments_contracts.money import Money
from payments_contracts.payments import AccountBalancePaymentChanged, InvoiceRestrictionChanged


def _synced(number: str, country: str, version: int, account: str = "C300") -> InvoiceSynced:
    usd = Money(amount_minor=10_000, currency="USD")
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
            total=usd,
            open_amount=usd,
            erp_status="open",
            billing_country=country,
            posted_payments=[],
        ),
    )


def _uow(policies: MerchantPolicies | None = None) -> FakeUnitOfWork:
    config = IntakeConfig(policies=policies or MerchantPolicies(default=PARTIAL_MULTI_PORTAL))
    return FakeUnitOfWork(Store(), config)


async def _apply(uow: FakeUnitOfWork, event: InvoiceSynced) -> list[InvoiceRestrictionChanged]:
    before = len(uow.published)
    await on_invoice_synced(event, uow)
    return [m for m in uow.published[before:] if isinstance(m, InvoiceRestrictionChanged)]


def test_the_announced_restriction_is_the_rejection_a_pay_command_gets():
    invoice = InvoiceFacts("INV-JP", "USD", 10_000, "open", False, "JP", registered=True)
    request = PayRequest("invoice", "card", (RequestedInvoice("INV-JP"),))
    rejection = decide(request, AccountView(True, {"INV-JP": invoice}), PARTIAL_MULTI_PORTAL)
    restriction = country_restriction(PARTIAL_MULTI_PORTAL, "JP")
    assert isinstance(rejection, Rejection) and restriction is not None
    assert (restriction.reason, restriction.message) == (rejection.reason, rejection.message)
    assert restriction.reason is Reason.PAY_THROUGH_DISTRIBUTOR
    assert country_restriction(PARTIAL_MULTI_PORTAL, "US") is None
    assert country_restriction(FULL_PAYMENT_PORTAL, "JP") is None


async def test_an_invoice_synced_in_a_distributor_country_is_announced_restricted():
    uow = _uow()
    event = _synced("INV-JP", "JP", 1)
    [announced] = await _apply(uow, event)
    assert announced.account_id == "C300"
    assert announced.causation_id == event.event_id
    assert announced.correlation_id == event.correlation_id
    p = announced.payload
    assert (p.invoice_number, p.restricted, p.reason_code) == ("INV-JP", True, "pay_through_distributor")
    assert p.message is not None and "distributor" in p.message
    assert uow.store.invoices[("C300", "INV-JP")]["restricted"] is True


async def test_an_unrestricted_invoice_announces_nothing():
    uow = _uow()
    assert await _apply(uow, _synced("INV-US", "US", 1)) == []
    assert uow.store.invoices[("C300", "INV-US")]["restricted"] is False


async def test_a_newer_version_still_restricted_announces_nothing_again():
    uow = _uow()
    await _apply(uow, _synced("INV-JP", "JP", 1))
    assert await _apply(uow, _synced("INV-JP", "DE", 2)) == []  # another distributor country


async def test_the_restriction_ends_when_the_country_no_longer_applies_and_starts_again():
    uow = _uow()
    await _apply(uow, _synced("INV-1", "JP", 1))
    [lifted] = await _apply(uow, _synced("INV-1", "US", 2))
    p = lifted.payload
    assert (p.restricted, p.reason_code, p.message) == (False, None, None)
    assert await _apply(uow, _synced("INV-1", "US", 3)) == []
    [again] = await _apply(uow, _synced("INV-1", "JP", 4))
    assert again.payload.restricted is True


async def test_a_stale_version_announces_nothing():
    uow = _uow()
    await _apply(uow, _synced("INV-1", "JP", 2))
    assert await _apply(uow, _synced("INV-1", "US", 1)) == []
    assert uow.store.invoices[("C300", "INV-1")]["restricted"] is True


async def test_the_policy_of_the_invoices_account_decides():
    policies = MerchantPolicies.from_config(
        {
            "default": "full-payment-portal",
            "merchants": {"acme-eu": {"policy": "partial-multi-portal", "accounts": ["C300"]}},
        }
    )
    uow = _uow(policies)
    assert await _apply(uow, _synced("INV-1", "JP", 1, account="C100")) == []  # seed 000: no list
    [announced] = await _apply(uow, _synced("INV-2", "JP", 1, account="C300"))
    assert announced.account_id == "C300" and announced.payload.restricted


def _account_news(uow: FakeUnitOfWork) -> list[AccountBalancePaymentChanged]:
    return [m for m in uow.published if isinstance(m, AccountBalancePaymentChanged)]


async def test_an_account_is_told_once_that_its_policy_does_not_let_it_pay_the_balance():
    uow = _uow()  # seed 003: no account-level payment
    await _apply(uow, _synced("INV-1", "US", 1))
    await _apply(uow, _synced("INV-2", "US", 1))
    [news] = _account_news(uow)
    p = news.payload
    assert (news.account_id, p.allowed, p.reason_code) == ("C300", False, "account_balance_not_allowed")
    assert p.message is not None and "select the invoices" in p.message


async def test_an_account_whose_policy_changes_is_told_again():
    uow = _uow(MerchantPolicies(default=FULL_PAYMENT_PORTAL))
    await _apply(uow, _synced("INV-1", "US", 1))
    uow.config = IntakeConfig(policies=MerchantPolicies(default=PARTIAL_MULTI_PORTAL))
    await _apply(uow, _synced("INV-1", "US", 2))
    assert [n.payload.allowed for n in _account_news(uow)] == [True, False]
