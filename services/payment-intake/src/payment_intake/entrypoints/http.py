"""The providers' webhook endpoints: `POST /callbacks/provider` (the sandbox provider,
Standard Webhooks) and `POST /callbacks/stripe` (Stripe's scheme); each verifies with its
provider's `WebhookSource` and puts the callback on `payments.callbacks`.

- missing or stale/future timestamp (outside the 5-minute tolerance): 400;
- bad or missing signature: 401; nothing is stored or published for either. Several
  secrets verify at once (Standard Webhooks rotation): any one of them signing is enough.
  The signature is checked over the raw body before anything parses it, so 401 means
  the secret (or the signing) is wrong and nothing else;
- signed, but not a JSON object of the contract (not JSON, nested past the parser's
  depth, null, an array, a number, no `type`): 400 `invalid_body`, never 500;
- a body over the cap: 413 before it is read (BodyLimit, set up in main);
- a signed body that is not the provider's event: 400; an event type we do not act on:
  200 `ignored`;
- a callback naming a payment of another account than the one it claims (or, for
  Stripe, an account of another merchant than the one whose secret signed it): 409,
  nothing published (the payment's account, not the caller's claim, decides);
- accepted (`receive_callback`, in one unit of work): the webhook id (Stripe's event id)
  is remembered and a ProviderCallbackReceived goes into the outbox; a repeated webhook
  id answers 200 without a second effect. The database down answers 503 so the provider
  retries later.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from payment_intake.domain.provider import ProviderNews, WebhookRefused, WebhookSource
from payment_intake.handlers.callbacks import receive_callback
from payment_intake.metrics import WEBHOOKS_REFUSED
from payment_intake.settings import SERVICE
from payment_intake.unit_of_work import UnitsOfWork
from payments_contracts.card_numbers import contains_card_number, redact_card_numbers
from payments_contracts.payments import ProviderCallbackPayload, ProviderCallbackReceived
from payments_platform.messaging import is_transient

log = logging.getLogger(__name__)
# Event ids derived from webhook ids: a webhook re-published by a crashed relay is
# still one event to the consumer.
WEBHOOK_NAMESPACE = uuid.UUID("6f0c5b8e-0d7e-4a43-9a0b-4f3c2f1e9a11")


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    WEBHOOKS_REFUSED.labels(code).inc()
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def callback_router(units: UnitsOfWork, sources: dict[str, WebhookSource]) -> APIRouter:
    """One route per provider: `/callbacks/provider` (the sandbox's), `/callbacks/stripe`."""
    router = APIRouter()
    for name, source in sources.items():
        router.add_api_route(
            f"/callbacks/{name}", _endpoint(units, source, name), methods=["POST"], name=f"{name}_callback"
        )
    return router


def _endpoint(units: UnitsOfWork, source: WebhookSource, provider: str) -> Any:
    async def provider_callback(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        claimed_id = headers.get("webhook-id", "")
        shown = redact_card_numbers(claimed_id)  # whatever a caller puts there, never a card number
        try:
            verified = source.verify(body, headers)
        except WebhookRefused as refused:
            log.warning("webhook refused", extra={"webhook_id": shown, "why": refused.message})
            return _refuse(refused.status, refused.code, refused.message)
        shown = redact_card_numbers(verified.webhook_id)
        if contains_card_number(verified.webhook_id) or contains_card_number(
            body.decode("utf-8", errors="replace")
        ):
            log.warning("webhook carried a card number; refused", extra={"webhook_id": shown})
            return _refuse(422, "card_number_in_input", "a callback never carries a card number")
        try:
            news = source.read(verified)
            if news is None:
                return JSONResponse({"status": "ignored", "reason": "event type not handled"})
            message = _callback(news)
        except WebhookRefused as refused:
            log.warning("webhook refused", extra={"webhook_id": shown, "why": refused.message})
            return _refuse(refused.status, refused.code, refused.message)
        except (ValidationError, ValueError) as exc:
            log.warning("webhook body invalid", extra={"webhook_id": shown, "error": type(exc).__name__})
            return _refuse(400, "invalid_body", "the callback body does not match the contract")
        try:
            async with units() as uow:
                receipt = await receive_callback(message, uow)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return _refuse(503, "unavailable", "try again later")
        if receipt == "foreign":
            log.warning(
                "webhook names a payment of another account; refused",
                extra={"webhook_id": shown, "payment_id": str(message.payload.payment_id)},
            )
            return _refuse(409, "account_mismatch", "the payment does not belong to that account")
        return JSONResponse({"status": receipt})

    provider_callback.__name__ = f"{provider}_callback"
    return provider_callback


def _callback(news: ProviderNews) -> ProviderCallbackReceived:
    payload = ProviderCallbackPayload(
        webhook_id=news.webhook_id,
        provider_event=news.provider_event,  # checked by the model: one of ProviderEvent
        payment_id=news.payment_id,
        checkout_id=news.checkout_id,
        amount=news.amount,
        provider_payment_ref=news.provider_payment_ref,
        reason=news.reason,
        refund_id=news.refund_id,
        provider_occurred_at=news.occurred_at,
    )
    return ProviderCallbackReceived.originating(
        producer=SERVICE,
        account_id=news.account_id,
        payload=payload,
        event_id=uuid.uuid5(WEBHOOK_NAMESPACE, news.webhook_id),
    )
