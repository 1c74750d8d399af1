"""What a hosted-payments provider offers besides opening checkouts: ask for a
checkout's status, cancel a checkout, refund money it took (settled later and
announced by a `refund.succeeded` / `refund.failed` webhook); and the sandbox
controls over webhook delivery (failed list, re-send)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox_provider.ledger import Ledger, Refund
from sandbox_provider.webhooks import WebhookSender

log = logging.getLogger(__name__)

Faults = Callable[[str], Awaitable[JSONResponse | None]]


class RefundRequest(BaseModel):
    refund_id: str = Field(min_length=1, max_length=64, description="The merchant's id: idempotency key")
    checkout_id: str
    amount_minor: int = Field(gt=0)
    currency: str = Field(min_length=3, max_length=3)
    reason: str | None = None


def _refuse(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}, **extra}, status_code=status)


def _refund_view(refund: Refund) -> dict[str, Any]:
    return {
        "refund_id": refund.refund_id,
        "provider_refund_id": refund.provider_refund_id,
        "checkout_id": refund.checkout_id,
        "payment_id": refund.payment_id,
        "amount_minor": refund.amount_minor,
        "currency": refund.currency,
        "status": refund.status,
        "reason": refund.reason,
    }


def payment_routes(
    ledger: Ledger, sender: WebhookSender, faults: Faults, *, settle_after_s: float
) -> APIRouter:
    router = APIRouter()
    refusals: set[str] = set()  # checkout ids whose refunds the provider will refuse
    settling: set[asyncio.Task[None]] = set()

    @router.get("/v1/checkouts/{checkout_id}", response_model=None)
    async def checkout_status(checkout_id: str) -> dict[str, Any] | JSONResponse:
        if (fault := await faults("query")) is not None:
            return fault
        checkout = ledger.checkouts.get(checkout_id)
        if checkout is None:
            return _refuse(404, "unknown_checkout", f"no checkout {checkout_id}")
        return checkout.view()

    @router.post("/v1/checkouts/{checkout_id}/cancel", response_model=None)
    async def cancel_checkout(checkout_id: str) -> dict[str, Any] | JSONResponse:
        """Idempotent; a checkout whose money moved cannot be cancelled (409, with its state)."""
        if (fault := await faults("cancel")) is not None:
            return fault
        checkout = ledger.checkouts.get(checkout_id)
        if checkout is None:
            return _refuse(404, "unknown_checkout", f"no checkout {checkout_id}")
        if checkout.status in ("processing", "succeeded"):
            log.info(
                "cancel refused: money moved",
                extra={"checkout_id": checkout_id, "checkout_status": checkout.status},
            )
            return _refuse(
                409, "checkout_completed", "money moved on this checkout", checkout=checkout.view()
            )
        if checkout.status == "open":
            checkout.status = "cancelled"
            checkout.reason = "cancelled_by_merchant"
            log.info("checkout cancelled by the merchant", extra={"checkout_id": checkout_id})
        return checkout.view()

    async def settle(refund: Refund) -> None:
        await asyncio.sleep(settle_after_s)
        refused = refund.checkout_id in refusals
        refund.status = "failed" if refused else "succeeded"
        refund.reason = "refund_declined" if refused else None
        log.info("refund settled", extra=_refund_view(refund))
        data = {**_refund_view(refund), "account_id": refund.account_id}
        sender.send_all([(f"refund.{refund.status}", data)])

    @router.post("/v1/refunds", status_code=201, response_model=None)
    async def refund(body: RefundRequest) -> dict[str, Any] | JSONResponse:
        if (fault := await faults("refund")) is not None:
            return fault
        existing = ledger.refunds.get(body.refund_id)
        if existing is not None:
            return _refund_view(existing)
        checkout = ledger.checkouts.get(body.checkout_id)
        if checkout is None:
            return _refuse(404, "unknown_checkout", f"no checkout {body.checkout_id}")
        if checkout.status != "succeeded" or body.currency != checkout.currency:
            log.info("refund refused: nothing to refund", extra={"refund_id": body.refund_id})
            return _refuse(422, "nothing_to_refund", f"checkout is {checkout.status}; no money was taken")
        if body.amount_minor > ledger.refundable_minor(checkout):
            log.info("refund refused: above what is refundable", extra={"refund_id": body.refund_id})
            return _refuse(422, "amount_above_refundable", "more than what is left to refund")
        created, _ = ledger.refund(body.refund_id, checkout, body.amount_minor)
        log.info("refund accepted", extra=_refund_view(created))
        task = asyncio.create_task(settle(created))
        settling.add(task)
        task.add_done_callback(settling.discard)
        return _refund_view(created)

    @router.get("/v1/refunds/{refund_id}", response_model=None)
    async def refund_status(refund_id: str) -> dict[str, Any] | JSONResponse:
        if (fault := await faults("query")) is not None:
            return fault
        found = ledger.refunds.get(refund_id)
        if found is None:
            return _refuse(404, "unknown_refund", f"no refund {refund_id}")
        return _refund_view(found)

    @router.get("/sandbox/refunds")
    async def list_refunds() -> list[dict[str, Any]]:
        return [_refund_view(r) for r in ledger.refunds.values()]

    @router.post("/sandbox/checkouts/{checkout_id}/refuse-refunds")
    async def refuse_refunds(checkout_id: str) -> dict[str, str]:
        """Refunds of this checkout will settle as failed."""
        refusals.add(checkout_id)
        log.info("refund refusal armed", extra={"checkout_id": checkout_id})
        return {"status": "armed"}

    return router


def webhook_routes(sender: WebhookSender) -> APIRouter:
    router = APIRouter()

    @router.get("/sandbox/webhooks")
    async def webhooks(state: str | None = None) -> list[dict[str, Any]]:
        """Delivered webhooks; with `state` (pending, delivered, failed, gone, dropped or
        all) every message in that state with its attempts."""
        if state is None:
            return sender.delivered
        return [m.summary() for m in sender.messages.values() if state in ("all", m.state)]

    @router.get("/sandbox/webhooks/failed")
    async def failed_webhooks() -> list[dict[str, Any]]:
        """Messages that used up the retry schedule, were refused with 410 or were dropped."""
        return sender.failed()

    @router.get("/sandbox/webhooks/{webhook_id}")
    async def webhook(webhook_id: str) -> dict[str, Any]:
        message = sender.messages.get(webhook_id)
        if message is None:
            raise HTTPException(404, f"no webhook {webhook_id}")
        return message.summary()

    @router.post("/sandbox/webhooks/{webhook_id}/resend")
    async def resend(webhook_id: str) -> dict[str, Any]:
        message = sender.resend(webhook_id)
        if message is None:
            raise HTTPException(404, f"no webhook {webhook_id}")
        return {"webhook_id": webhook_id, "state": message.state}

    return router
