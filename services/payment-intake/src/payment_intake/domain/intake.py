"""Judge a pay command against the invoice facts and the merchant's policy.

The checks run in the order docs/product.md gives ("The order of checks"), and the first
failing check decides the rejection (naming every invoice that fails it):

1. account known, every invoice on it (and each selected once); the command's shape
   allowed by the policy (several invoices, account balance);
2. invoice registered with the provider;
3. invoice open with a balance above zero;
4. no payment already pending on it;
5. the amount rules of the policy;
6. the country restriction (pay through a distributor);
7. the method allowed, and its details valid.

Card numbers are looked for before anything else (`card_number_fields`): such a
command is refused without any of it being echoed, stored or logged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

# The one detector every input goes through lives in shared/.
from payments_contracts.card_numbers import card_number_fields as card_number_fields

from .billing import GuestDetails, billing_problems
from .policy import PaymentPolicy
from .rejections import Reason, Rejection, invoices_rejection

Scope = Literal["invoice", "selected_invoices", "account_balance"]


@dataclass(frozen=True)
class InvoiceFacts:
    """What payment-intake knows about one invoice, from `invoices` and its own payments."""

    invoice_number: str
    currency: str
    open_amount_minor: int
    erp_status: str
    closed: bool
    billing_country: str
    registered: bool
    unposted_succeeded_minor: int = 0
    pending: bool = False

    @property
    def balance_minor(self) -> int:
        """ERP open amount minus our succeeded payments the ERP has not posted yet
        (docs/product.md, "Pay status")."""
        return max(0, self.open_amount_minor - self.unposted_succeeded_minor)

    @property
    def is_open(self) -> bool:
        return not self.closed and self.erp_status == "open"


@dataclass(frozen=True)
class RequestedInvoice:
    invoice_number: str
    amount_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class PayRequest:
    scope: Scope
    method: str
    invoices: tuple[RequestedInvoice, ...] = ()
    currency: str | None = None  # account balance: which currency's balance
    guest: GuestDetails | None = None


@dataclass(frozen=True)
class AccountView:
    """The facts a decision needs: the account's invoices and who owns foreign numbers."""

    known: bool
    invoices: Mapping[str, InvoiceFacts]
    foreign: frozenset[str] = frozenset()

    def after_opening(self, numbers: Iterable[str]) -> AccountView:
        """The view once a payment is open on `numbers`: those invoices are pending."""
        invoices = dict(self.invoices)
        for n in set(numbers):
            if n in invoices:
                invoices[n] = replace(invoices[n], pending=True)
        return replace(self, invoices=invoices)


@dataclass(frozen=True)
class Accepted:
    scope: Scope
    method: str
    currency: str
    allocations: tuple[tuple[str, int], ...]

    @property
    def total_minor(self) -> int:
        return sum(amount for _, amount in self.allocations)


CARD_NUMBER_REJECTION = Rejection(
    Reason.CARD_NUMBER_IN_INPUT,
    "A card number was entered outside the secure card form. Enter card details only in the"
    " payment provider's card form.",
)


PAY_THROUGH_DISTRIBUTOR = Rejection(
    Reason.PAY_THROUGH_DISTRIBUTOR,
    "Customers in your country pay their invoices through their distributor. Please"
    " contact your distributor to pay.",
)


def country_restriction(policy: PaymentPolicy, billing_country: str) -> Rejection | None:
    """Whether the policy keeps an invoice billed to this country from being paid online at
    all (seed 003: such customers pay through their distributor). The same code and
    message answer a pay command and announce the restriction to the read model."""
    if billing_country in policy.distributor_countries:
        return PAY_THROUGH_DISTRIBUTOR
    return None


def decide(request: PayRequest, view: AccountView, policy: PaymentPolicy) -> Rejection | Accepted:
    """Accept the request with its allocations, or say why not (first failing check)."""
    if not view.known:
        return Rejection(Reason.UNKNOWN_ACCOUNT, "We could not find your customer account.")
    if request.scope == "account_balance":
        return _decide_account_balance(request, view, policy)
    numbers = tuple(i.invoice_number for i in request.invoices)
    if request.scope == "selected_invoices" and len(numbers) > 1 and not policy.multiple_invoices:
        return Rejection(
            Reason.SEVERAL_INVOICES_NOT_ALLOWED,
            "Selecting several invoices for one payment is not available: pay one invoice at a time.",
            numbers,
        )
    duplicates = tuple(sorted({n for n in numbers if numbers.count(n) > 1}))
    if duplicates:
        return invoices_rejection(Reason.DUPLICATE_INVOICE_SELECTED, duplicates)
    foreign = tuple(n for n in numbers if n not in view.invoices and n in view.foreign)
    if foreign:
        return invoices_rejection(Reason.INVOICE_OF_ANOTHER_ACCOUNT, foreign)
    missing = tuple(n for n in numbers if n not in view.invoices)
    if missing:
        return invoices_rejection(Reason.INVOICE_NOT_FOUND, missing)
    facts = [view.invoices[n] for n in numbers]
    rejection = _invoice_state_checks(facts)
    if rejection is not None:
        return rejection
    amounts = _amount_rules(request, facts, policy)
    if isinstance(amounts, Rejection):
        return amounts
    rejection = _country_and_method(request, facts, policy, policy.invoice_methods)
    if rejection is not None:
        return rejection
    return Accepted(request.scope, request.method, facts[0].currency, amounts)


def _invoice_state_checks(facts: list[InvoiceFacts]) -> Rejection | None:
    """Checks 2 to 4: registered, open with a balance, nothing pending."""
    if all(f.registered and f.is_open and f.balance_minor > 0 and not f.pending for f in facts):
        return None  # the usual case, in one pass
    for reason, failing in (
        (Reason.INVOICE_NOT_REGISTERED, lambda f: not f.registered),
        (Reason.INVOICE_CLOSED, lambda f: not f.is_open),
        (Reason.ZERO_BALANCE, lambda f: f.balance_minor <= 0),
        (Reason.PAYMENT_PENDING, lambda f: f.pending),
    ):
        bad = tuple(f.invoice_number for f in facts if failing(f))
        if bad:
            return invoices_rejection(reason, bad)
    return None


def _amount_rules(
    request: PayRequest, facts: list[InvoiceFacts], policy: PaymentPolicy
) -> Rejection | tuple[tuple[str, int], ...]:
    currencies = {f.currency for f in facts} | {
        i.currency for i in request.invoices if i.currency is not None
    }
    if len(currencies) > 1:
        return invoices_rejection(Reason.CURRENCY_MISMATCH, tuple(f.invoice_number for f in facts))
    several = len(facts) > 1
    allocations: list[tuple[str, int]] = []
    for item, fact in zip(request.invoices, facts, strict=True):
        number, balance = fact.invoice_number, fact.balance_minor
        amount = balance if item.amount_minor is None else item.amount_minor
        if amount <= 0:
            return invoices_rejection(Reason.AMOUNT_NOT_POSITIVE, (number,))
        if amount > balance:
            return invoices_rejection(Reason.AMOUNT_ABOVE_BALANCE, (number,))
        if amount < balance:
            if several:
                return invoices_rejection(
                    Reason.MUST_PAY_FULL_BALANCE, tuple(f.invoice_number for f in facts)
                )
            if not policy.partial_payment:
                return invoices_rejection(Reason.PARTIAL_PAYMENT_NOT_ALLOWED, (number,))
        allocations.append((number, amount))
    return tuple(allocations)


def _country_and_method(
    request: PayRequest,
    facts: list[InvoiceFacts],
    policy: PaymentPolicy,
    methods: frozenset[str],
) -> Rejection | None:
    """Checks 6 and 7."""
    restricted = tuple(f.invoice_number for f in facts if country_restriction(policy, f.billing_country))
    if restricted:
        return Rejection(PAY_THROUGH_DISTRIBUTOR.reason, PAY_THROUGH_DISTRIBUTOR.message, restricted)
    if request.method not in methods:
        allowed = ", ".join(sorted(m.replace("_", " ") for m in methods)) or "none"
        return Rejection(
            Reason.METHOD_NOT_ALLOWED,
            f"This payment method is not available here. Available: {allowed}.",
            tuple(f.invoice_number for f in facts),
        )
    if request.method == "guest_checkout" and request.guest is None:
        return Rejection(Reason.INVALID_BILLING_DETAILS, "Enter your billing address.")
    if request.guest is not None:
        problems = billing_problems(request.guest, name_required=request.method == "guest_checkout")
        if problems:
            fields = ", ".join(p.field for p in problems)
            return Rejection(
                Reason.INVALID_BILLING_DETAILS,
                " ".join(p.message for p in problems) + f" (fields: {fields})",
            )
    return None


def _decide_account_balance(
    request: PayRequest, view: AccountView, policy: PaymentPolicy
) -> Rejection | Accepted:
    if not policy.account_balance:
        return Rejection(
            Reason.ACCOUNT_BALANCE_NOT_ALLOWED,
            "Paying the whole account balance is not available: select the invoices to pay.",
        )
    candidates = [f for f in view.invoices.values() if f.is_open and f.balance_minor > 0]
    if request.currency is not None:
        candidates = [f for f in candidates if f.currency == request.currency]
    elif len({f.currency for f in candidates}) > 1:
        return Rejection(
            Reason.CURRENCY_REQUIRED,
            "Your account has balances in several currencies: choose which one to pay.",
        )
    if not candidates:
        return Rejection(Reason.ZERO_BALANCE, "Your account has no balance to pay.")
    candidates.sort(key=lambda f: f.invoice_number)
    rejection = _invoice_state_checks(candidates)
    if rejection is not None:
        return rejection
    rejection = _country_and_method(request, candidates, policy, policy.account_balance_methods)
    if rejection is not None:
        return rejection
    return Accepted(
        "account_balance",
        request.method,
        candidates[0].currency,
        tuple((f.invoice_number, f.balance_minor) for f in candidates),
    )
