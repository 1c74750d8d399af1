"""Stripe mode: the Stripe API paths and objects our Stripe connectors use, served with
state under `/stripe` (a Stripe merchant's `PAYMENTS_STRIPE_API_BASE=<sandbox>/stripe`).

stripe-mock judges shapes but keeps no state; this keeps state (customers, Checkout
Sessions that complete, fail or expire, refunds that settle) in the sandbox's one ledger,
so the same `/sandbox/checkouts/*` controls pay a Stripe merchant's checkout, and sends
Stripe-format events signed with Stripe's scheme (`Stripe-Signature: t=...,v1=...`) with
the sandbox's retry schedule. What it answers is checked against the OpenAPI description
stripe-mock embeds (tests/integration/test_sandbox_stripe_mode.py). Like Stripe it takes
form-encoded bodies, honours `Idempotency-Key`, accepts test keys only, and refuses a
session that would expire sooner than 30 minutes or later than 24 hours.

Amounts of a Stripe checkout in the ledger are in Stripe's units (the same as ours for
the currencies the tests and the demo use).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox_provider.ledger import Checkout, Ledger, Refund
from sandbox_provider.webhooks import Message, WebhookSender

API_VERSION = "2025-01-27.acacia"
Faults = Callable[[str], Awaitable[JSONResponse | None]]


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`line_items[0][price_data][currency]=usd`) as nested values."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, rest = key.partition("[")
        path = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node: Any = root
        for part, following in zip(path, [*path[1:], None], strict=True):
            if following is None:
                if isinstance(node, list):
                    node.append(value)
                else:
                    node[part] = value
                break
            child_is_list = following == "" or following.isdigit()
            if isinstance(node, list):
                index = int(part) if part.isdigit() else len(node)
                while len(node) <= index:
                    node.append([] if child_is_list else {})
                node = node[index]
            else:
                node = node.setdefault(part, [] if child_is_list else {})
    return root


def _error(
    status: int, kind: str, message: str, *, code: str | None = None, param: str | None = None
) -> JSONResponse:
    body: dict[str, Any] = {"type": kind, "message": message}
    if code is not None:
        body["code"] = code
    if param is not None:
        body["param"] = param
    return JSONResponse({"error": body}, status_code=status)


@dataclass
class StripeSession:
    checkout_id: str
    created: int
    expires_at: int
    currency: str
    line_items: list[dict[str, Any]]
    metadata: dict[str, str]
    client_reference_id: str | None
    customer: str | None
    success_url: str | None
    cancel_url: str | None
    url: str
    payment_intent: str | None = None
    payment_status: str = "unpaid"
    amount_received: int | None = None


@dataclass
class StripeState:
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, StripeSession] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)  # Stripe refund id -> extras
    idempotent: dict[str, tuple[int, Any]] = field(default_factory=dict)


class StripeWebhookSender(WebhookSender):
    """The sandbox's delivery and retries, with Stripe's body and signature."""

    def signer(self, secret: str) -> None:
        return None

    def build(self, event_type: str, data: dict[str, Any]) -> Message:
        event = {
            "id": _id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": data},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
        message = Message(str(event["id"]), event_type, json.dumps(event))
        self.messages[message.webhook_id] = message
        return message

    def headers(self, msg_id: str, body: str) -> dict[str, str]:
        stamp = int(time.time()) - (400 * 86400 if self.options.stale_timestamp else 0)
        mac = hmac.new(self._secret.encode(), f"{stamp}.{body}".encode(), hashlib.sha256).hexdigest()
        return {"content-type": "application/json", "stripe-signature": f"t={stamp},v1={mac}"}


class StripeMode:
    def __init__(
        self, ledger: Ledger, sender: StripeWebhookSender, public_url: str, *, refund_settle_s: float
    ) -> None:
        self.ledger = ledger
        self.sender = sender
        self.state = StripeState()
        self._public_url = public_url
        self._settle_s = refund_settle_s
        self._tasks: set[asyncio.Task[None]] = set()

    # --- objects, in Stripe's shapes --------------------------------------------------

    def customer(self, found: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": found["id"],
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": found["created"],
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": found.get("description"),
            "discount": None,
            "email": None,
            "invoice_prefix": found["id"][-8:].upper(),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": found.get("metadata", {}),
            "name": found.get("name"),
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def payment_intent(self, session: StripeSession, checkout: Checkout) -> dict[str, Any]:
        status = {
            "succeeded": "succeeded",
            "processing": "processing",
            "failed": "requires_payment_method",
            "cancelled": "canceled",
        }.get(checkout.status, "requires_payment_method")
        return {
            "id": session.payment_intent,
            "object": "payment_intent",
            "amount": checkout.amount_minor,
            "amount_capturable": 0,
            "amount_received": session.amount_received or 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{session.payment_intent}_secret_sandbox",
            "confirmation_method": "automatic",
            "created": session.created,
            "currency": session.currency,
            "customer": session.customer,
            "description": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": session.metadata,
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": None,
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def session(self, session: StripeSession, *, expand_intent: bool = False) -> dict[str, Any]:
        checkout = self.ledger.checkouts[session.checkout_id]
        status = {"expired": "expired", "cancelled": "expired", "open": "open"}.get(
            checkout.status, "complete"
        )
        total = sum(
            int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in session.line_items
        )
        intent: Any = session.payment_intent
        if expand_intent and intent is not None:
            intent = self.payment_intent(session, checkout)
        return {
            "id": session.checkout_id,
            "object": "checkout.session",
            "adaptive_pricing": None,
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": total,
            "amount_total": session.amount_received if session.amount_received is not None else total,
            "automatic_tax": {"enabled": False, "liability": None, "status": None},
            "billing_address_collection": None,
            "cancel_url": session.cancel_url,
            "client_reference_id": session.client_reference_id,
            "client_secret": None,
            "consent": None,
            "consent_collection": None,
            "created": session.created,
            "currency": session.currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": session.customer,
            "customer_creation": None if session.customer else "if_required",
            "customer_details": None,
            "customer_email": None,
            "discounts": [],
            "expires_at": session.expires_at,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": None,
            "metadata": session.metadata,
            "mode": "payment",
            "payment_intent": intent,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": session.payment_status,
            "phone_number_collection": {"enabled": False},
            "recovered_from": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": status,
            "submit_type": None,
            "subscription": None,
            "success_url": session.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": session.url if status == "open" else None,
        }

    def refund(self, refund: Refund, extras: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": refund.provider_refund_id,
            "object": "refund",
            "amount": refund.amount_minor,
            "balance_transaction": None,
            "charge": None,
            "created": extras["created"],
            "currency": refund.currency.lower(),
            "metadata": extras["metadata"],
            "payment_intent": extras["payment_intent"],
            "reason": extras["reason"],
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": refund.status,
            "transfer_reversal": None,
            **({"failure_reason": refund.reason} if refund.status == "failed" else {}),
        }

    # --- what the /sandbox controls do to a Stripe checkout -----------------------------

    def _session_of(self, checkout: Checkout) -> StripeSession:
        return self.state.sessions[checkout.checkout_id]

    def completed(self, checkout: Checkout, amount: int) -> None:
        session = self._session_of(checkout)
        session.payment_status, session.amount_received = "paid", amount
        self.sender.send_all([("checkout.session.completed", self.session(session))])

    def failed(self, checkout: Checkout) -> None:
        """A delayed payment method (a bank debit) that fails after the page closed."""
        session = self._session_of(checkout)
        checkout.status = "processing"
        processing = self.session(session)
        checkout.status = "failed"
        self.sender.send_all(
            [
                ("checkout.session.completed", processing),
                ("checkout.session.async_payment_failed", self.session(session)),
            ]
        )

    def expired(self, checkout: Checkout) -> None:
        self.sender.send_all([("checkout.session.expired", self.session(self._session_of(checkout)))])

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.sender.close()


async def _form(request: Request) -> dict[str, Any]:
    return decode_form(parse_qsl((await request.body()).decode(), keep_blank_values=True))


def stripe_routes(mode: StripeMode, faults: Faults) -> APIRouter:
    router = APIRouter(prefix="/stripe")
    ledger, state = mode.ledger, mode.state

    def refused_key(request: Request) -> JSONResponse | None:
        key = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not key.startswith("sk_test_"):
            return _error(
                401, "invalid_request_error", "The sandbox takes Stripe test keys only (sk_test_...)."
            )
        return None

    async def idempotent(request: Request, make: Callable[[], Awaitable[JSONResponse]]) -> JSONResponse:
        key = request.headers.get("idempotency-key")
        if key and key in state.idempotent:
            status, body = state.idempotent[key]
            return JSONResponse(body, status_code=status, headers={"idempotent-replayed": "true"})
        answer = await make()
        if key and answer.status_code < 500:
            state.idempotent[key] = (answer.status_code, json.loads(bytes(answer.body)))
        return answer

    @router.post("/v1/customers")
    async def create_customer(request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        form = await _form(request)

        async def make() -> JSONResponse:
            found = {
                "id": _id("cus"),
                "created": int(time.time()),
                "name": form.get("name"),
                "description": form.get("description"),
                "metadata": form.get("metadata", {}),
            }
            state.customers[found["id"]] = found
            return JSONResponse(mode.customer(found))

        return await idempotent(request, make)

    @router.get("/v1/customers/search")
    async def search_customers(request: Request, query: str = "") -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        # The one query our connectors send: metadata['k']:'v' AND metadata['k']:'v'.
        wanted = {}
        for clause in query.split(" AND "):
            name, _, value = clause.partition(":")
            wanted[name.strip()[len("metadata['") : -2]] = value.strip()[1:-1].replace("\\'", "'")
        data = [
            mode.customer(c)
            for c in state.customers.values()
            if all(c.get("metadata", {}).get(k) == v for k, v in wanted.items())
        ]
        return JSONResponse(
            {
                "object": "search_result",
                "data": data,
                "has_more": False,
                "next_page": None,
                "url": "/v1/customers/search",
            }
        )

    @router.post("/v1/checkout/sessions")
    async def create_session(request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        if (fault := await faults("checkout")) is not None:
            return fault
        form = await _form(request)

        async def make() -> JSONResponse:
            now = int(time.time())
            expires_at = int(form.get("expires_at") or now + 86400)
            if not now + 1800 <= expires_at <= now + 86400:
                return _error(
                    400,
                    "invalid_request_error",
                    "The `expires_at` timestamp must be between 30 minutes and 24 hours from now.",
                    param="expires_at",
                )
            metadata = dict(form.get("metadata") or {})
            items = list(form.get("line_items") or [])
            currency = str(items[0]["price_data"]["currency"]) if items else "usd"
            payment_id = str(form.get("client_reference_id") or metadata.get("payment_id") or uuid.uuid4())
            checkout = ledger.open_checkout(
                payment_id=payment_id,
                account_id=str(metadata.get("account_id", "")),
                amount_minor=sum(
                    int(i["price_data"]["unit_amount"]) * int(i.get("quantity", 1)) for i in items
                ),
                currency=currency.upper(),
                method="payer_portal" if form.get("customer") else "card",
                invoices=[
                    {
                        "invoice_number": str(i["price_data"]["product_data"]["name"]).removeprefix(
                            "Invoice "
                        ),
                        "amount_minor": int(i["price_data"]["unit_amount"]),
                    }
                    for i in items
                ],
                ttl_s=expires_at - now,
                provider="stripe",
            )
            session = state.sessions.get(checkout.checkout_id)
            if session is None:
                path = "portal" if form.get("customer") else "checkout"
                session = state.sessions[checkout.checkout_id] = StripeSession(
                    checkout_id=checkout.checkout_id,
                    created=now,
                    expires_at=expires_at,
                    currency=currency,
                    line_items=items,
                    metadata=metadata,
                    client_reference_id=form.get("client_reference_id"),
                    customer=form.get("customer"),
                    success_url=form.get("success_url"),
                    cancel_url=form.get("cancel_url"),
                    url=f"{mode._public_url}/{path}/{checkout.checkout_id}",
                    payment_intent=_id("pi"),
                )
            return JSONResponse(mode.session(session))

        return await idempotent(request, make)

    def expand_intent(request: Request) -> bool:
        return any(
            v == "payment_intent" for k, v in request.query_params.multi_items() if k.startswith("expand")
        )

    @router.get("/v1/checkout/sessions/{session_id}")
    async def retrieve_session(session_id: str, request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        if (fault := await faults("query")) is not None:
            return fault
        session = state.sessions.get(session_id)
        if session is None or session_id not in ledger.checkouts:
            return _error(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
            )
        return JSONResponse(mode.session(session, expand_intent=expand_intent(request)))

    @router.post("/v1/checkout/sessions/{session_id}/expire")
    async def expire_session(session_id: str, request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        if (fault := await faults("cancel")) is not None:
            return fault
        session = state.sessions.get(session_id)
        checkout = ledger.checkouts.get(session_id)
        if session is None or checkout is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
            )
        if checkout.status != "open":
            return _error(
                400,
                "invalid_request_error",
                f"Only an `open` Checkout Session can be expired; this one is {checkout.status}.",
                code="checkout_session_not_open",
            )
        checkout.status, checkout.reason = "expired", "expired_by_merchant"
        mode.expired(checkout)
        return JSONResponse(mode.session(session))

    @router.post("/v1/refunds")
    async def create_refund(request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        if (fault := await faults("refund")) is not None:
            return fault
        form = await _form(request)

        async def make() -> JSONResponse:
            intent = form.get("payment_intent")
            session = next((s for s in state.sessions.values() if s.payment_intent == intent), None)
            checkout = None if session is None else ledger.checkouts.get(session.checkout_id)
            if session is None or checkout is None:
                return _error(
                    404,
                    "invalid_request_error",
                    f"No such payment_intent: '{intent}'",
                    code="resource_missing",
                )
            if checkout.status != "succeeded":
                return _error(
                    400,
                    "invalid_request_error",
                    "This PaymentIntent has no successful charge to refund.",
                    code="charge_not_refundable",
                )
            amount = int(form.get("amount") or ledger.refundable_minor(checkout))
            if amount > ledger.refundable_minor(checkout):
                return _error(
                    400,
                    "invalid_request_error",
                    "Refund amount is greater than unrefunded amount.",
                    code="amount_too_large",
                )
            metadata = dict(form.get("metadata") or {})
            created, _ = ledger.refund(metadata.get("refund_id") or _id("ref"), checkout, amount)
            state.refunds[created.provider_refund_id] = {
                "created": int(time.time()),
                "metadata": metadata,
                "payment_intent": intent,
                "reason": form.get("reason"),
            }
            mode.spawn(settle(created))
            return JSONResponse(mode.refund(created, state.refunds[created.provider_refund_id]))

        return await idempotent(request, make)

    async def settle(refund: Refund) -> None:
        await asyncio.sleep(mode._settle_s)
        refund.status = "succeeded"
        extras = state.refunds[refund.provider_refund_id]
        mode.sender.send_all([("refund.updated", mode.refund(refund, extras))])

    @router.get("/v1/refunds/{refund_id}")
    async def retrieve_refund(refund_id: str, request: Request) -> JSONResponse:
        if (refusal := refused_key(request)) is not None:
            return refusal
        if (fault := await faults("query")) is not None:
            return fault
        found = next((r for r in ledger.refunds.values() if r.provider_refund_id == refund_id), None)
        if found is None:
            return _error(
                404, "invalid_request_error", f"No such refund: '{refund_id}'", code="resource_missing"
            )
        return JSONResponse(mode.refund(found, state.refunds[refund_id]))

    @router.get("/sandbox/events")
    async def events() -> list[dict[str, Any]]:
        """Every Stripe-format event sent, with its deliveries (as /sandbox/webhooks)."""
        return [m.summary() for m in mode.sender.messages.values()]

    return router
