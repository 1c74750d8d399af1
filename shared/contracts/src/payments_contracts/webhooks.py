"""The providers' webhooks to payment-intake (`POST /callbacks/provider`, the sandbox's;
`POST /callbacks/stripe`, Stripe's) and their answers.

Standard Webhooks: the body is signed with the shared secret (`webhook-id`,
`webhook-timestamp`, `webhook-signature` headers). Rendered into
`contracts/openapi/payment-intake.json` by `payments-contracts`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from .payments import ProviderEvent


class WebhookData(BaseModel):
    """The payment (or refund) the webhook is about. Other fields are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    payment_id: UUID = Field(description="Our payment_id, given to the provider when the checkout opened")
    checkout_id: str
    account_id: str = Field(description="Must be the payment's account, else 409")
    amount_minor: int | None = Field(None, description="The amount the provider took, minor units")
    currency: str | None = Field(None, description="ISO 4217, with amount_minor")
    provider_payment_ref: str | None = None
    reason: str | None = Field(None, description="The provider's reason on failures")
    refund_id: UUID | None = Field(None, description="Our refund id, on refund.* events")


class ProviderWebhook(BaseModel):
    """A provider webhook. A `type` outside the handled ones is answered 200 `ignored`."""

    model_config = ConfigDict(extra="allow")

    type: ProviderEvent | str = Field(
        description="Handled: payment.processing, payment.succeeded, payment.failed, checkout.expired, "
        "checkout.cancelled, refund.succeeded, refund.failed"
    )
    timestamp: datetime = Field(description="When the provider saw the event (ISO 8601 with offset)")
    data: WebhookData


class WebhookAccepted(BaseModel):
    """accepted: stored and put on `payments.callbacks`; duplicate: this webhook-id was already
    accepted (no second effect); ignored: an event type payment-intake does not handle."""

    status: Literal["accepted", "duplicate", "ignored"]
    reason: str | None = None


class WebhookErrorDetail(BaseModel):
    code: str = Field(
        description="bad_timestamp (400), invalid_body (400), bad_signature (401), request_timeout "
        "(408), account_mismatch (409), payload_too_large (413), card_number_in_input (422), "
        "unavailable (503)"
    )
    message: str


class WebhookRefused(BaseModel):
    error: WebhookErrorDetail


class StripeEventData(BaseModel):
    """`data` of a Stripe event: the object it is about (a Checkout Session or a Refund)."""

    model_config = ConfigDict(extra="allow")

    object: dict[str, Any] = Field(
        description="The Stripe object; ours carry metadata.payment_id and metadata.account_id "
        "(refunds also refund_id and checkout_id). Without them the event is ignored."
    )


class StripeEvent(BaseModel):
    """A Stripe event (docs/providers.md maps each handled type to ours). Handled:
    checkout.session.completed, checkout.session.async_payment_succeeded,
    checkout.session.async_payment_failed, checkout.session.expired, refund.created,
    refund.updated, refund.failed; any other type is answered 200 `ignored`."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="evt_...: the dedupe key", pattern="^evt_")
    object: Literal["event"]
    type: str
    created: int = Field(description="Seconds since the epoch")
    account: str | None = Field(None, description="Stripe Connect: the connected account it is from")
    data: StripeEventData
