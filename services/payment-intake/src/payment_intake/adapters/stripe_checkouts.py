"""Stripe's connector for one merchant: the provider port on the official `stripe` library
(`StripeClient` on its async httpx transport), every request checked against stripe-mock
in the tests (docs/providers.md maps each operation).

- a payment's hosted page is a Checkout Session (mode=payment), one line item per
  invoice at the amount we fixed (partial or whole), our ids in `client_reference_id` and
  the metadata of the session and of its PaymentIntent; the payer portal is the same
  session on the account's Stripe Customer, so the payer sees and saves cards there;
- status sync retrieves the session with its PaymentIntent expanded; cancel expires it;
  a refund is a Refund on the session's PaymentIntent; refund sync retrieves the Refund;
- idempotency keys from our ids on every request that creates or moves money:
  `checkout-<payment id>`, `refund-<refund id>`, `customer-<merchant>-<account>`.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe

from payment_intake.domain.payment import Payment
from payment_intake.domain.provider import (
    CheckoutState,
    ClaimedCheckout,
    OpenedCheckout,
    ProviderRefused,
    RefundState,
)
from payment_intake.domain.refunds import Refund
from payments_platform.provider_credentials import StripeMerchant
from payments_platform.stripe_support import (
    AccountCustomers,
    NotRepresentable,
    StripeConnection,
    StripeRefused,
    calling_stripe,
    from_stripe_amount,
    to_stripe_amount,
)

# Stripe lets a Checkout Session live 30 minutes to 24 hours. A shorter checkout time
# of ours is kept by our own expiry timer, which then expires the session (cancel).
SESSION_SHORTEST = timedelta(minutes=30, seconds=30)
SESSION_LONGEST = timedelta(hours=23, minutes=59)
# Stripe's metadata values are at most 500 characters; the line items list every invoice.
_METADATA_VALUE_MAX = 500
_REFUND_REASONS = {"double_payment": "duplicate"}  # late or wrong amounts: requested_by_customer
_REFUND_STATES = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}


def _refused(exc: StripeRefused) -> ProviderRefused:
    return ProviderRefused(exc.code, exc.message, {"http_status": exc.http_status})


def _invoice_list(numbers: list[str]) -> str:
    joined = " ".join(numbers)
    if len(joined) <= _METADATA_VALUE_MAX:
        return joined
    return joined[: _METADATA_VALUE_MAX - 12].rsplit(" ", 1)[0] + " (and more)"


def session_expiry(payment: Payment, now: datetime) -> int:
    """The session's `expires_at`: the payment's, within what Stripe allows."""
    wanted = min(max(payment.expires_at, now + SESSION_SHORTEST), now + SESSION_LONGEST)
    return int(wanted.timestamp())


class StripeCheckouts:
    def __init__(
        self, merchant: StripeMerchant, *, api_base: str, timeout_s: float = 10.0, attempts: int = 3
    ) -> None:
        self._merchant = merchant
        self._connection = StripeConnection(merchant.credentials, api_base=api_base, timeout_s=timeout_s)
        self._client = self._connection.client
        self._customers = AccountCustomers(self._client, merchant.merchant)
        self._attempts = attempts

    @property
    def client(self) -> stripe.StripeClient:
        return self._client

    async def _ask(self, call: Any) -> Any:
        try:
            return await calling_stripe(call, attempts=self._attempts)
        except StripeRefused as exc:
            if exc.code == "resource_missing":
                raise ProviderRefused("unknown_checkout", exc.message) from exc
            raise _refused(exc) from exc

    def session_params(self, payment: Payment, *, customer: str | None, now: datetime) -> dict[str, Any]:
        currency = payment.currency.lower()
        numbers = [number for number, _ in payment.allocations]
        try:
            line_items = [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": to_stripe_amount(amount, payment.currency),
                        "product_data": {"name": f"Invoice {number}"},
                    },
                }
                for number, amount in payment.allocations
            ]
        except NotRepresentable as exc:
            raise ProviderRefused("amount_not_representable", str(exc)) from exc
        metadata = {
            "payment_id": str(payment.payment_id),
            "account_id": payment.account_id,
            "merchant": self._merchant.merchant,
            "invoice_numbers": _invoice_list(numbers),
            "scope": payment.scope,
        }
        back = self._merchant.return_url
        joiner = "&" if "?" in back else "?"
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": line_items,
            "client_reference_id": str(payment.payment_id),
            "metadata": metadata,
            "payment_intent_data": {
                "metadata": metadata,
                "description": f"{payment.account_id} {' '.join(numbers)}"[:1000],
            },
            "expires_at": session_expiry(payment, now),
            "success_url": f"{back}{joiner}payment={payment.payment_id}&checkout={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{back}{joiner}payment={payment.payment_id}&cancelled=1",
        }
        if customer is not None:
            # The payer portal: the account's customer, whose saved cards the page offers.
            params["customer"] = customer
            params["saved_payment_method_options"] = {"payment_method_save": "enabled"}
        return params

    async def open_checkout(self, payment: Payment) -> OpenedCheckout:
        customer = None
        if payment.method == "payer_portal":
            try:
                customer = await self._customers.customer_of(payment.account_id)
            except StripeRefused as exc:
                raise _refused(exc) from exc
        params = self.session_params(payment, customer=customer, now=datetime.now(UTC))
        session = await self._ask(
            lambda: self._client.v1.checkout.sessions.create_async(
                params=params,  # type: ignore[arg-type]  # checked by stripe-mock, not by TypedDicts
                options={"idempotency_key": f"checkout-{payment.payment_id}"},
            )
        )
        return OpenedCheckout(
            checkout_id=str(session.id),
            url=str(session.url),
            expires_at=datetime.fromtimestamp(int(session.expires_at), UTC),
        )

    async def _session(self, checkout_id: str) -> dict[str, Any]:
        session = await self._ask(
            lambda: self._client.v1.checkout.sessions.retrieve_async(
                checkout_id, params={"expand": ["payment_intent"]}
            )
        )
        data: dict[str, Any] = session.to_dict()
        return data

    async def checkout_state(self, checkout: ClaimedCheckout) -> CheckoutState:
        return checkout_state_of(await self._session(checkout.checkout_id))

    async def cancel_checkout(self, checkout: ClaimedCheckout) -> CheckoutState:
        state = await self.checkout_state(checkout)
        if state.status in ("processing", "succeeded"):
            raise ProviderRefused(
                "checkout_completed", "money moved on this checkout", {"checkout": asdict(state)}
            )
        if state.status != "open":
            return state  # expired (or failed) already: nothing takes money there
        try:
            session = await calling_stripe(
                lambda: self._client.v1.checkout.sessions.expire_async(checkout.checkout_id),
                attempts=self._attempts,
            )
        except StripeRefused as exc:
            # Completed between our look and the expiry: say what it is now.
            now = await self.checkout_state(checkout)
            if now.status in ("processing", "succeeded"):
                raise ProviderRefused(
                    "checkout_completed", "money moved on this checkout", {"checkout": asdict(now)}
                ) from exc
            raise _refused(exc) from exc
        return checkout_state_of(session.to_dict())

    async def refund(self, refund: Refund) -> RefundState:
        if refund.checkout_id is None:
            raise ProviderRefused("no_checkout", "the payment has no checkout at the provider")
        session = await self._session(refund.checkout_id)
        intent = session.get("payment_intent")
        intent_id = intent.get("id") if isinstance(intent, dict) else intent
        if not intent_id:
            raise ProviderRefused("nothing_to_refund", "the checkout took no money")
        try:
            amount = to_stripe_amount(refund.amount_minor, refund.currency)
        except NotRepresentable as exc:
            raise ProviderRefused("amount_not_representable", str(exc)) from exc
        params: dict[str, Any] = {
            "payment_intent": str(intent_id),
            "amount": amount,
            "reason": _REFUND_REASONS.get(refund.reason_code, "requested_by_customer"),
            "metadata": {
                "refund_id": str(refund.refund_id),
                "payment_id": str(refund.payment_id),
                "account_id": refund.account_id,
                "checkout_id": refund.checkout_id,
                "reason_code": refund.reason_code,
            },
        }
        created = await self._ask(
            lambda: self._client.v1.refunds.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": f"refund-{refund.refund_id}"},
            )
        )
        return refund_state_of(str(refund.refund_id), created.to_dict())

    async def refund_state(self, refund: Refund) -> RefundState:
        if not refund.provider_refund_id:
            # Submitted before we learnt Stripe's id: asking again with the same key is
            # the same refund, and tells us its id and state.
            return await self.refund(refund)
        provider_refund_id = refund.provider_refund_id
        found = await self._ask(lambda: self._client.v1.refunds.retrieve_async(provider_refund_id))
        return refund_state_of(str(refund.refund_id), found.to_dict())

    async def close(self) -> None:
        await self._connection.close()


def checkout_state_of(session: dict[str, Any]) -> CheckoutState:
    """A Checkout Session (its PaymentIntent expanded) as our checkout states."""
    intent = session.get("payment_intent")
    intent_status = intent.get("status") if isinstance(intent, dict) else None
    intent_id = intent.get("id") if isinstance(intent, dict) else intent
    currency = str(session.get("currency") or "").upper() or None
    amount = session.get("amount_total")
    reason = None
    if session.get("status") == "expired":
        status = "expired"
    elif session.get("status") == "complete" and session.get("payment_status") in (
        "paid",
        "no_payment_required",
    ):
        status = "succeeded"
    elif session.get("status") == "complete":
        # A delayed method (a bank debit) still settling, or failed after the page closed.
        failed = intent_status in ("canceled", "requires_payment_method")
        status, reason = ("failed", "async_payment_failed") if failed else ("processing", None)
    else:
        status = "open"
    minor = None
    if amount is not None and currency is not None:
        minor = from_stripe_amount(int(amount), currency)
    return CheckoutState(
        checkout_id=str(session["id"]),
        status=status,
        amount_minor=minor,
        currency=currency,
        provider_payment_ref=None if intent_id is None else str(intent_id),
        reason=reason,
    )


def refund_state_of(refund_id: str, refund: dict[str, Any]) -> RefundState:
    return RefundState(
        refund_id=refund_id,
        provider_refund_id=str(refund["id"]),
        status=_REFUND_STATES.get(str(refund.get("status")), "pending"),
        reason=refund.get("failure_reason"),
    )
