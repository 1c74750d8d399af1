"""The sandbox provider's HTTP API: the provider API our services call, plus `/sandbox/*`
controls for tests and a small page a person can pay on."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox_provider import pages
from sandbox_provider.ledger import Checkout, Fault, FaultMode, Ledger
from sandbox_provider.payments import payment_routes, webhook_routes
from sandbox_provider.registrations import registration_routes
from sandbox_provider.settings import SandboxSettings
from sandbox_provider.stripe_mode import StripeMode, StripeWebhookSender, stripe_routes
from sandbox_provider.webhooks import WebhookOptions, WebhookSender


class InvoiceRegistration(BaseModel):
    account_id: str
    invoice_number: str
    amount_minor: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)


class CheckoutInvoice(BaseModel):
    invoice_number: str
    amount_minor: int


class CheckoutRequest(BaseModel):
    payment_id: str
    account_id: str
    amount_minor: int = Field(gt=0)
    currency: str
    method: Literal["guest_checkout", "card", "payer_portal"]
    invoices: list[CheckoutInvoice] = Field(default_factory=list)


class FaultRequest(BaseModel):
    target: Literal["registration", "checkout", "query", "cancel", "refund"]
    mode: FaultMode
    count: int = -1
    delay_s: float = 0.0


class Completion(BaseModel):
    amount_minor: int | None = None  # to simulate a provider confirming another amount
    # Take the money although the checkout was cancelled or expired (the customer paid
    # in the moment before the cancellation reached the provider).
    late: bool = False


class Failure(BaseModel):
    reason: str = "card_declined"


log = logging.getLogger(__name__)


def _refuse(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class RequestLog:
    """One line per request (method, path, status, milliseconds), as a pure ASGI
    middleware: the provider answers thousands of calls a second in benchmarks, and
    Starlette's BaseHTTPMiddleware costs a task and a stream per request. Liveness
    probes are left out: they are the launcher's and an orchestrator's, every second."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health/live":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )


def build_app(settings: SandboxSettings) -> tuple[FastAPI, WebhookSender]:
    app = FastAPI(title="sandbox payment provider", version="1.0.0")
    app.add_middleware(RequestLog)
    ledger = Ledger()
    sender = WebhookSender(
        settings.webhook_url,
        settings.webhook_secret,
        schedule_s=settings.webhook_schedule_s,
        time_scale=settings.webhook_time_scale,
    )
    stripe_sender = StripeWebhookSender(
        settings.stripe_webhook_url,
        settings.stripe_webhook_secret,
        schedule_s=settings.webhook_schedule_s,
        time_scale=settings.webhook_time_scale,
    )
    sender.companions.append(stripe_sender)
    stripe = StripeMode(ledger, stripe_sender, settings.public_url, refund_settle_s=settings.refund_settle_s)

    async def apply_fault(target: str) -> JSONResponse | None:
        fault: Fault | None = ledger.take_fault(target)
        if fault is None:
            return None
        log.info("injected fault applied", extra={"target": target, "mode": fault.mode})
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s or 2.0)
            return None
        if fault.mode == "error":
            return _refuse(503, "unavailable", "sandbox: injected outage")
        return _refuse(422, f"{target}_refused", "sandbox: the provider refused this request")

    @app.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "alive"}

    # --- provider API -----------------------------------------------------------------

    @app.post("/v1/invoices", status_code=201, response_model=None)
    async def register_invoice(body: InvoiceRegistration) -> dict[str, Any] | JSONResponse:
        if (refusal := await apply_fault("registration")) is not None:
            return refusal
        invoice = ledger.register(body.account_id, body.invoice_number, body.amount_minor, body.currency)
        return {"provider_invoice_id": invoice.provider_invoice_id, "status": invoice.status}

    @app.delete("/v1/invoices/{account_id}/{invoice_number}", response_model=None)
    async def withdraw_invoice(account_id: str, invoice_number: str) -> dict[str, Any] | JSONResponse:
        if (refusal := await apply_fault("registration")) is not None:
            return refusal
        invoice = ledger.invoices.get((account_id, invoice_number))
        if invoice is None:
            return _refuse(404, "unknown_invoice", "no such invoice")
        invoice.status = "withdrawn"
        return {"provider_invoice_id": invoice.provider_invoice_id, "status": invoice.status}

    @app.post("/v1/checkout-sessions", status_code=201, response_model=None)
    async def open_checkout(body: CheckoutRequest) -> dict[str, Any] | JSONResponse:
        if (refusal := await apply_fault("checkout")) is not None:
            return refusal
        for item in body.invoices:
            registered = ledger.invoices.get((body.account_id, item.invoice_number))
            if registered is None or registered.status != "registered":
                log.info(
                    "checkout refused: invoice not registered",
                    extra={"payment_id": body.payment_id, "invoice_number": item.invoice_number},
                )
                return _refuse(
                    422, "invoice_not_registered", f"invoice {item.invoice_number} is not registered"
                )
        checkout = ledger.open_checkout(
            payment_id=body.payment_id,
            account_id=body.account_id,
            amount_minor=body.amount_minor,
            currency=body.currency,
            method=body.method,
            invoices=[i.model_dump() for i in body.invoices],
            ttl_s=settings.checkout_ttl_s,
        )
        log.info("checkout opened", extra=_about(checkout))
        path = "portal" if body.method == "payer_portal" else "checkout"
        return {
            "checkout_id": checkout.checkout_id,
            "url": f"{settings.public_url}/{path}/{checkout.checkout_id}",
            "expires_at": checkout.expires_at.isoformat(),
        }

    # --- sandbox controls ---------------------------------------------------------------

    def checkout_or_404(checkout_id: str) -> Checkout:
        checkout = ledger.checkouts.get(checkout_id)
        if checkout is None:
            raise HTTPException(404, f"no checkout {checkout_id}")
        return checkout

    def event_data(checkout: Checkout, **extra: Any) -> dict[str, Any]:
        return {**_named(checkout), **extra}

    @app.post("/sandbox/checkouts/{checkout_id}/complete")
    async def complete(checkout_id: str, body: Completion | None = None) -> dict[str, str]:
        checkout = checkout_or_404(checkout_id)
        late = body is not None and body.late and checkout.status in ("cancelled", "expired")
        if checkout.status != "open" and not late:
            raise HTTPException(409, f"checkout is {checkout.status}")
        checkout.status = "succeeded"
        amount = body.amount_minor if body and body.amount_minor is not None else checkout.amount_minor
        ref = f"pay_{checkout.checkout_id[3:]}"
        checkout.captured_minor, checkout.provider_payment_ref = amount, ref
        log.info("checkout completed", extra={**_about(checkout), "captured_minor": amount, "late": late})
        if checkout.provider == "stripe":
            stripe.completed(checkout, amount)
            return {"status": checkout.status}
        sender.send_all(
            [
                ("payment.processing", event_data(checkout, provider_payment_ref=ref)),
                ("payment.succeeded", event_data(checkout, amount_minor=amount, provider_payment_ref=ref)),
            ]
        )
        return {"status": checkout.status}

    @app.post("/sandbox/checkouts/{checkout_id}/fail")
    async def fail(checkout_id: str, body: Failure | None = None) -> dict[str, str]:
        checkout = checkout_or_404(checkout_id)
        if checkout.status != "open":
            raise HTTPException(409, f"checkout is {checkout.status}")
        checkout.status = "failed"
        reason = body.reason if body else "card_declined"
        checkout.reason = reason
        log.info("checkout failed", extra={**_about(checkout), "reason": reason})
        if checkout.provider == "stripe":
            stripe.failed(checkout)
            return {"status": checkout.status}
        sender.send_all([("payment.failed", event_data(checkout, reason=reason))])
        return {"status": checkout.status}

    @app.post("/sandbox/checkouts/{checkout_id}/abandon")
    async def abandon(checkout_id: str) -> dict[str, str]:
        checkout = checkout_or_404(checkout_id)
        if checkout.status != "open":
            raise HTTPException(409, f"checkout is {checkout.status}")
        checkout.status = "expired"
        checkout.reason = "abandoned"
        log.info("checkout abandoned", extra=_about(checkout))
        if checkout.provider == "stripe":
            stripe.expired(checkout)
            return {"status": checkout.status}
        sender.send_all([("checkout.expired", event_data(checkout, reason="abandoned"))])
        return {"status": checkout.status}

    @app.get("/sandbox/checkouts")
    async def list_checkouts(payment_id: str | None = None) -> list[dict[str, Any]]:
        return [
            {**vars(c), "expires_at": c.expires_at.isoformat()}
            for c in ledger.checkouts.values()
            if payment_id is None or c.payment_id == payment_id
        ]

    @app.get("/sandbox/invoices")
    async def list_invoices() -> list[dict[str, Any]]:
        return [
            {**vars(i), "registration_calls": ledger.registration_calls[key]}
            for key, i in ledger.invoices.items()
        ]

    @app.post("/sandbox/faults")
    async def inject_fault(body: FaultRequest) -> dict[str, str]:
        ledger.faults[body.target] = Fault(body.mode, body.count, body.delay_s)
        log.info("fault armed", extra=body.model_dump())
        return {"status": "armed"}

    @app.delete("/sandbox/faults")
    async def clear_faults() -> dict[str, str]:
        ledger.faults.clear()
        return {"status": "cleared"}

    @app.put("/sandbox/webhook-options")
    async def set_webhook_options(options: WebhookOptions) -> WebhookOptions:
        """How webhooks are sent from now on: duplicated, reordered, stale or dropped."""
        sender.options = options
        log.info("webhook options set", extra=options.model_dump())
        return options

    @app.delete("/sandbox/checkouts/{checkout_id}")
    async def forget_checkout(checkout_id: str) -> dict[str, str]:
        """The provider loses a checkout (as after a data loss on its side)."""
        checkout = checkout_or_404(checkout_id)
        del ledger.checkouts[checkout_id]
        ledger.by_payment.pop(checkout.payment_id, None)
        log.info("checkout forgotten", extra=_about(checkout))
        return {"status": "forgotten"}

    # --- pages a person can use -----------------------------------------------------------

    @app.get("/checkout/{checkout_id}", response_class=HTMLResponse)
    async def checkout_page(checkout_id: str) -> str:
        return pages.card_page(checkout_or_404(checkout_id))

    @app.get("/portal/{checkout_id}", response_class=HTMLResponse)
    async def payer_portal_page(checkout_id: str) -> str:
        return pages.payer_portal_page(checkout_or_404(checkout_id))

    app.include_router(registration_routes(ledger, apply_fault))
    app.include_router(payment_routes(ledger, sender, apply_fault, settle_after_s=settings.refund_settle_s))
    app.include_router(webhook_routes(sender))
    app.include_router(stripe_routes(stripe, apply_fault))
    return app, sender


def _named(checkout: Checkout) -> dict[str, Any]:
    """What a webhook's data says of its checkout."""
    return {
        "checkout_id": checkout.checkout_id,
        "payment_id": checkout.payment_id,
        "account_id": checkout.account_id,
        "amount_minor": checkout.amount_minor,
        "currency": checkout.currency,
    }


def _about(checkout: Checkout) -> dict[str, object]:
    """Log fields naming a checkout and what it is for."""
    return {**_named(checkout), "method": checkout.method}
