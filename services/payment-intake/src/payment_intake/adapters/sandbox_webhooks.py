"""The sandbox provider's webhooks: Standard Webhooks (`standardwebhooks` library).

A timestamp missing or outside the library's 5 minutes is refused with 400, a missing or
wrong signature with 401. Several secrets verify at once (a rotation): any one is enough.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, get_args

from pydantic import ValidationError
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from payment_intake.domain.provider import ProviderNews, VerifiedWebhook, WebhookRefused
from payments_contracts.money import Money
from payments_contracts.payments import ProviderEvent

TOLERANCE_S = 5 * 60  # the standardwebhooks library's own tolerance
PROVIDER_EVENTS = frozenset(get_args(ProviderEvent))


class StandardWebhooks:
    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one webhook secret is needed")
        self._verifiers = [Webhook(secret) for secret in secrets]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> VerifiedWebhook:
        refusal = _timestamp_problem(headers.get("webhook-timestamp"))
        if refusal is not None:
            raise WebhookRefused(400, "bad_timestamp", refusal)
        for verifier in self._verifiers:
            try:
                data = verifier.verify(body, dict(headers))
            except (WebhookVerificationError, ValueError):
                continue
            return VerifiedWebhook(headers.get("webhook-id", ""), data)
        raise WebhookRefused(401, "bad_signature", "signature verification failed")

    def read(self, webhook: VerifiedWebhook) -> ProviderNews | None:
        body = webhook.body
        event_type = body.get("type") if isinstance(body, dict) else None
        if event_type not in PROVIDER_EVENTS:
            return None
        try:
            return _news(webhook.webhook_id, body)
        except (ValidationError, KeyError, TypeError, ValueError, AttributeError):
            raise WebhookRefused(
                400, "invalid_body", "the callback body does not match the contract"
            ) from None


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


def _news(webhook_id: str, body: dict[str, Any]) -> ProviderNews:
    data = body["data"]
    amount = None
    if data.get("amount_minor") is not None and data.get("currency"):
        amount = Money(amount_minor=int(data["amount_minor"]), currency=data["currency"])
    refund_id = data.get("refund_id")
    return ProviderNews(
        webhook_id=webhook_id,
        provider_event=body["type"],
        account_id=str(data["account_id"]),
        payment_id=uuid.UUID(str(data["payment_id"])),
        checkout_id=str(data["checkout_id"]),
        occurred_at=datetime.fromisoformat(body["timestamp"]),
        amount=amount,
        provider_payment_ref=data.get("provider_payment_ref"),
        reason=data.get("reason"),
        refund_id=None if refund_id is None else uuid.UUID(str(refund_id)),
    )
