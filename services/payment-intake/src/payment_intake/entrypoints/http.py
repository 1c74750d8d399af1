"""POST /callbacks/provider: verify a Standard Webhooks callback and put it on `payments.callbacks`.

- missing or stale/future timestamp (outside the library's 5-minute tolerance): 400;
- bad or missing signature: 401; nothing is stored or published for either. Several
  secrets verify at once (Standard Webhooks rotation): any one of them signing is enough;
- a body over the cap: 413 before it is read (BodyLimit, set up in main);
- a callback naming a payment of another account than the one it claims: 409, nothing
  published (the payment's account, not the caller's claim, decides where it goes);
- accepted (`receive_callback`, in one unit of work): the webhook id is remembered and a
  ProviderCallbackReceived goes into the outbox; a repeated webhook id answers 200
  without a second effect. The database down answers 503 so the provider retries later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, get_args

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payment_intake.handlers.callbacks import receive_callback
from payment_intake.metrics import WEBHOOKS_REFUSED
from payment_intake.settings import SERVICE
from payment_intake.unit_of_work import UnitsOfWork
from payments_contracts.card_numbers import contains_card_number, redact_card_numbers
from payments_contracts.money import Money
from payments_contracts.payments import (
    ProviderCallbackPayload,
    ProviderCallbackReceived,
    ProviderEvent,
)
from payments_platform.messaging import is_transient

log = logging.getLogger(__name__)

TOLERANCE_S = 5 * 60  # the standardwebhooks library's own tolerance
PROVIDER_EVENTS = frozenset(get_args(ProviderEvent))
# Event ids derived from webhook ids: a webhook re-published by a crashed relay is
# still one event to the consumer.
WEBHOOK_NAMESPACE = uuid.UUID("6f0c5b8e-0d7e-4a43-9a0b-4f3c2f1e9a11")


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    WEBHOOKS_REFUSED.labels(code).inc()
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def callback_router(units: UnitsOfWork, secrets: Sequence[str]) -> APIRouter:
    if not secrets:
        raise ValueError("at least one webhook secret is needed")
    router = APIRouter()
    verifiers = [Webhook(secret) for secret in secrets]

    @router.post("/callbacks/provider")
    async def provider_callback(request: Request) -> JSONResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        webhook_id = headers.get("webhook-id", "")
        shown = redact_card_numbers(webhook_id)  # whatever a caller puts there, never a card number
        refusal = _timestamp_problem(headers.get("webhook-timestamp"))
        if refusal is not None:
            log.warning("webhook refused", extra={"webhook_id": shown, "why": refusal})
            return _refuse(400, "bad_timestamp", refusal)
        data = _verified(verifiers, body, headers)
        if data is None:
            log.warning("webhook signature refused", extra={"webhook_id": shown})
            return _refuse(401, "bad_signature", "signature verification failed")
        if contains_card_number(webhook_id) or contains_card_number(body.decode("utf-8", errors="replace")):
            log.warning("webhook carried a card number; refused", extra={"webhook_id": shown})
            return _refuse(422, "card_number_in_input", "a callback never carries a card number")
        event_type = data.get("type") if isinstance(data, dict) else None
        if event_type not in PROVIDER_EVENTS:
            return JSONResponse({"status": "ignored", "reason": "event type not handled"})
        try:
            message = _callback(webhook_id, data)
        except (ValidationError, KeyError, TypeError, ValueError) as exc:
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

    return router


def _verified(verifiers: Sequence[Webhook], body: bytes, headers: dict[str, str]) -> Any:
    for verifier in verifiers:
        try:
            return verifier.verify(body, headers)
        except (WebhookVerificationError, ValueError):
            continue
    return None


def _timestamp_problem(header: str | None) -> str | None:
    if not header:
        return "missing webhook-timestamp"
    try:
        stamp = int(header)  # Standard Webhooks: integer seconds since the epoch
    except ValueError:
        return "invalid webhook-timestamp"
    if abs(time.time() - stamp) > TOLERANCE_S:
        return "webhook-timestamp outside the tolerance"
    return None


def _callback(webhook_id: str, body: dict[str, Any]) -> ProviderCallbackReceived:
    data = body["data"]
    amount = None
    if data.get("amount_minor") is not None and data.get("currency"):
        amount = Money(amount_minor=int(data["amount_minor"]), currency=data["currency"])
    payload = ProviderCallbackPayload(
        webhook_id=webhook_id,
        provider_event=body["type"],
        payment_id=uuid.UUID(str(data["payment_id"])),
        checkout_id=str(data["checkout_id"]),
        amount=amount,
        provider_payment_ref=data.get("provider_payment_ref"),
        reason=data.get("reason"),
        refund_id=data.get("refund_id"),
        provider_occurred_at=datetime.fromisoformat(body["timestamp"]),
    )
    return ProviderCallbackReceived.originating(
        producer=SERVICE,
        account_id=str(data["account_id"]),
        payload=payload,
        event_id=uuid.uuid5(WEBHOOK_NAMESPACE, webhook_id),
    )
