"""Making an invoice payable at Stripe (seed 000: "sent to the provider for payment
processing"), for one merchant.

Stripe holds no object per invoice here, by choice: an ERP invoice changes (its open
amount falls as payments post, credit notes arrive) and is cancelled, and Stripe's
Prices are immutable and its Invoices are a second receivables ledger with their own
numbering, dunning and fees, which would then disagree with the ERP's. What Stripe holds
is the account: one Customer per ERP account (the payer portal's saved cards and
payment history live there). Registering an invoice therefore means: the account's
Customer exists at Stripe, and the invoice's open amount is one Stripe can charge in
its currency (zero- and three-decimal rules). The invoice itself reaches Stripe as a line
item of the Checkout Session that pays it, at the amount we fix then. A change is
registered again the same way (nothing at Stripe to update), and a cancellation or a
zero balance withdraws it with no call at all: nothing at Stripe can take money for it
once payment-intake stops opening sessions for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from invoice_sync.domain.registration import (
    Accepted,
    Outcome,
    Refused,
    RegistrationRequest,
    WithdrawalRequest,
)
from payments_contracts.money import currency_exponent
from payments_platform.provider_credentials import StripeMerchant
from payments_platform.stripe_support import (
    AccountCustomers,
    NotRepresentable,
    StripeConnection,
    StripeRefused,
    to_stripe_amount,
)

# Stripe's largest amount (8 digits in most currencies); above it a session is refused.
STRIPE_AMOUNT_MAX = 99_999_999


class StripeRegistrations:
    def __init__(self, merchant: StripeMerchant, *, api_base: str, timeout_s: float = 10.0) -> None:
        self._connection = StripeConnection(merchant.credentials, api_base=api_base, timeout_s=timeout_s)
        self.customers = AccountCustomers(self._connection.client, merchant.merchant)

    async def register(self, requests: Sequence[RegistrationRequest]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for request in requests:
            refusal = _unchargeable(request)
            if refusal is not None:
                outcomes.append(refusal)
                continue
            try:
                outcomes.append(Accepted(await self.customers.customer_of(request.account_id)))
            except StripeRefused as exc:
                outcomes.append(Refused(f"stripe_{exc.code}", exc.message))
        return outcomes

    async def withdraw(self, requests: Sequence[WithdrawalRequest]) -> list[Outcome]:
        return [Accepted("") for _ in requests]

    async def aclose(self) -> None:
        await self._connection.close()


def _unchargeable(request: RegistrationRequest) -> Refused | None:
    try:
        currency_exponent(request.currency)
        amount = to_stripe_amount(request.amount_minor, request.currency)
    except NotRepresentable as exc:
        return Refused("amount_not_representable", str(exc))
    except ValueError as exc:
        return Refused("unknown_currency", str(exc))
    if amount > STRIPE_AMOUNT_MAX:
        return Refused("amount_too_large", f"Stripe takes at most {STRIPE_AMOUNT_MAX} in one payment")
    return None
