"""The sandbox provider's webhooks: Standard Webhooks (`standardwebhooks` library).

A timestamp missing or outside the library's 5 minutes is refused with 400, a missing or
wrong signature with 401. Several secrets verify at once (a rotation): any one is enough.
The signature is checked over the raw bytes before anything parses them, so 401 means
the secret (or the signing) is wrong and nothing else; a signed body that is not a JSON
object of the contract (not JSON, nested past the parser's depth, null, an array, a
number, no `type`) is 400 `invalid_body`, never a 500.
"""

from __future__ import annotations

import json
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
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            # JSON is UTF-8 (RFC 8259), so this is no callback whoever signed it; the
            # library signs text and cannot check a signature over other bytes.
            raise WebhookRefused(400, "invalid_body", "the callback body is not UTF-8 JSON") from None
        if not any(_signed_by(verifier, body, headers) for verifier in self._verifiers):
            raise WebhookRefused(401, "bad_signature", "signature verification failed")
        data = _json_object(body)
        if data is None or not isinstance(data.get("type"), str):
            raise WebhookRefused(
                400, "invalid_body", "the callback body is not a JSON object of the contract"
            )
        return VerifiedWebhook(headers.get("webhook-id", ""), data)

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


def _signed_by(verifier: Webhook, body: bytes, headers: Mapping[str, str]) -> bool:
    """`json_parse=False`: the library's own parse (json.loads) raised RecursionError on
    deeply nested bodies (a 500) and made a signed body that is not JSON look like a bad
    signature (a 401)."""
    try:
        verifier.verify(body, dict(headers), json_parse=False)
    except (WebhookVerificationError, ValueError):
        # ValueError: a malformed signature header (no comma, not base64).
        return False
    return True


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is anything else."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's recursion limit fits in far
        # less than the body cap (20,000 arrays in 40 KB).
        return None
    return data if isinstance(data, dict) else None


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
