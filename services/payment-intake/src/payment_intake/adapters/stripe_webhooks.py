"""Stripe's webhooks: verified with Stripe's scheme through the library, read in our words.

One endpoint for every Stripe merchant (`POST /callbacks/stripe`): a body is verified
against each Stripe merchant's endpoint secrets (two while one is rolled), and the
event is taken only for an account of a merchant whose secret signed it (and, on
Connect, only from that merchant's connected account), so one merchant's secret never
vouches for another's payments.

Which events mean what (docs/providers.md has the whole table):

| Stripe event | on | our provider event |
|---|---|---|
| checkout.session.completed | payment_status paid / no_payment_required | payment.succeeded |
| checkout.session.completed | payment_status unpaid (a delayed method) | payment.processing |
| checkout.session.async_payment_succeeded | | payment.succeeded |
| checkout.session.async_payment_failed | | payment.failed |
| checkout.session.expired | | checkout.expired |
| refund.created, refund.updated, refund.failed | status succeeded | refund.succeeded |
| the same | status failed / canceled | refund.failed |

Anything else (payment_intent.payment_failed among them: a declined card leaves the
hosted page open for another card, so it ends nothing) is acknowledged and ignored, as
is a session or refund that carries none of our metadata (made outside this system).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import stripe

from payment_intake.domain.provider import ProviderNews, VerifiedWebhook, WebhookRefused
from payments_contracts.money import Money
from payments_platform.provider_credentials import StripeMerchant
from payments_platform.stripe_support import NotRepresentable, from_stripe_amount

TOLERANCE_S = stripe.Webhook.DEFAULT_TOLERANCE  # 5 minutes, as Stripe recommends
_SESSION_EVENTS = {
    "checkout.session.async_payment_succeeded": "payment.succeeded",
    "checkout.session.async_payment_failed": "payment.failed",
    "checkout.session.expired": "checkout.expired",
}
_REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed"})
_REFUND_ENDS = {"succeeded": "refund.succeeded", "failed": "refund.failed", "canceled": "refund.failed"}


def _invalid(why: str) -> WebhookRefused:
    return WebhookRefused(400, "invalid_body", f"not a Stripe event: {why}")


def _signed_at(header: str | None) -> int | None:
    for item in (header or "").split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class StripeWebhooks:
    def __init__(
        self,
        merchants: Callable[[], Mapping[str, StripeMerchant]],
        merchant_of: Callable[[str], str | None],
    ) -> None:
        self._merchants = merchants
        self._merchant_of = merchant_of

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        header = headers.get("stripe-signature")
        signed_at = _signed_at(header)
        if signed_at is None:
            raise WebhookRefused(400, "bad_timestamp", "no timestamp in Stripe-Signature")
        # The library refuses only old timestamps; one from the future is as suspect.
        if abs(time.time() - signed_at) > TOLERANCE_S:
            raise WebhookRefused(400, "bad_timestamp", "Stripe-Signature timestamp outside the tolerance")
        event: Any = None
        signers: set[str] = set()
        for name, merchant in self._merchants().items():
            for secret in merchant.credentials.webhook_secrets:
                try:
                    event = stripe.Webhook.construct_event(body, header, secret, tolerance=TOLERANCE_S)
                except stripe.SignatureVerificationError:
                    continue
                except (ValueError, TypeError, AttributeError, KeyError):
                    # Signed by a secret of ours, but not JSON or not an event at all.
                    raise _invalid("the body does not parse as an event") from None
                signers.add(name)
                break
        if event is None:
            raise WebhookRefused(401, "bad_signature", "Stripe signature verification failed")
        data = event.to_dict()
        data_object = data.get("data")
        if (
            data.get("object") != "event"
            or not str(data.get("id", "")).startswith("evt_")
            or not isinstance(data.get("type"), str)
            or not isinstance(data.get("created"), int)
            or not isinstance(data_object, dict)
            or not isinstance(data_object.get("object"), dict)
        ):
            raise _invalid("object, id, type, created or data.object missing")
        return VerifiedWebhook(str(data["id"]), data, frozenset(signers))

    def read(self, webhook: VerifiedWebhook) -> ProviderNews | None:
        event = webhook.body
        kind: str = event["type"]
        found: Mapping[str, Any] = event["data"]["object"]
        metadata = found.get("metadata") or {}
        if not isinstance(metadata, dict) or "payment_id" not in metadata or "account_id" not in metadata:
            return None  # not made by this system
        if kind == "checkout.session.completed":
            paid = found.get("payment_status") in ("paid", "no_payment_required")
            ours = "payment.succeeded" if paid else "payment.processing"
        elif kind in _SESSION_EVENTS:
            ours = _SESSION_EVENTS[kind]
        elif kind in _REFUND_EVENTS:
            ended = _REFUND_ENDS.get(str(found.get("status")))
            if ended is None or "refund_id" not in metadata:
                return None  # still pending: its next event settles it
            ours = ended
        else:
            return None
        account_id = str(metadata["account_id"])
        self._check_merchant(webhook, account_id, event.get("account"))
        try:
            return self._news(webhook.webhook_id, ours, event, found, metadata, account_id)
        except (ValueError, TypeError, KeyError, NotRepresentable) as exc:
            raise _invalid(f"{kind}: {type(exc).__name__}") from None

    def _check_merchant(self, webhook: VerifiedWebhook, account_id: str, connected: Any) -> None:
        merchant = self._merchant_of(account_id)
        signers = webhook.signed_for or frozenset()
        if merchant is None or merchant not in signers:
            raise WebhookRefused(409, "account_mismatch", "the account is not of the merchant that signed it")
        expected = self._merchants()[merchant].credentials.account
        if expected is not None and connected != expected:
            raise WebhookRefused(409, "account_mismatch", "the event is from another connected account")

    @staticmethod
    def _news(
        webhook_id: str,
        ours: str,
        event: Mapping[str, Any],
        found: Mapping[str, Any],
        metadata: Mapping[str, Any],
        account_id: str,
    ) -> ProviderNews:
        occurred_at = datetime.fromtimestamp(int(event["created"]), UTC)
        if ours.startswith("refund."):
            return ProviderNews(
                webhook_id=webhook_id,
                provider_event=ours,
                account_id=account_id,
                payment_id=uuid.UUID(str(metadata["payment_id"])),
                checkout_id=str(metadata.get("checkout_id") or ""),
                occurred_at=occurred_at,
                provider_payment_ref=str(found["id"]),
                reason=found.get("failure_reason"),
                refund_id=uuid.UUID(str(metadata["refund_id"])),
            )
        amount = None
        if ours == "payment.succeeded" and found.get("amount_total") is not None:
            currency = str(found["currency"]).upper()
            amount = Money(
                amount_minor=from_stripe_amount(int(found["amount_total"]), currency), currency=currency
            )
        intent = found.get("payment_intent")
        if isinstance(intent, dict):
            intent = intent.get("id")
        return ProviderNews(
            webhook_id=webhook_id,
            provider_event=ours,
            account_id=account_id,
            payment_id=uuid.UUID(str(metadata["payment_id"])),
            checkout_id=str(found["id"]),
            occurred_at=occurred_at,
            amount=amount,
            provider_payment_ref=None if intent is None else str(intent),
            reason="async_payment_failed" if ours == "payment.failed" else None,
        )
