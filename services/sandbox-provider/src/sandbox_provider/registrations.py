"""Batched invoice registration and withdrawal, and targeted refusals for tests.

invoice-sync registers invoices in batches (one call per few hundred invoices), the way
hosted-payments providers offer bulk invoice import. Faults armed for the target
"registration" apply to a whole batch call (slow, 5xx, refuse everything); a refusal
armed under /sandbox/refusals refuses only the matching invoices, with a reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from sandbox_provider.ledger import Ledger

log = logging.getLogger(__name__)


class BatchRegistrationItem(BaseModel):
    account_id: str
    invoice_number: str
    amount_minor: int
    currency: str


class BatchRegistration(BaseModel):
    invoices: list[BatchRegistrationItem] = Field(max_length=5000)


class BatchWithdrawalItem(BaseModel):
    account_id: str
    invoice_number: str


class BatchWithdrawal(BaseModel):
    invoices: list[BatchWithdrawalItem] = Field(max_length=5000)


class RefusalRequest(BaseModel):
    account_id: str
    invoice_number: str | None = None  # None: every invoice of the account
    code: str = "invoice_refused"
    message: str = "sandbox: the provider refuses this invoice"


def registration_routes(
    ledger: Ledger, apply_fault: Callable[[str], Awaitable[JSONResponse | None]]
) -> APIRouter:
    router = APIRouter()
    refusals: dict[tuple[str, str | None], RefusalRequest] = {}

    def refusal_for(account_id: str, invoice_number: str) -> RefusalRequest | None:
        return refusals.get((account_id, invoice_number)) or refusals.get((account_id, None))

    def refused(code: str, message: str) -> dict[str, Any]:
        return {"status": "refused", "error": {"code": code, "message": message}}

    @router.post("/v1/invoices/batch", response_model=None)
    async def register_batch(body: BatchRegistration) -> dict[str, Any] | JSONResponse:
        if (fault := await apply_fault("registration")) is not None:
            return fault
        results: list[dict[str, Any]] = []
        for item in body.invoices:
            if (refusal := refusal_for(item.account_id, item.invoice_number)) is not None:
                results.append(refused(refusal.code, refusal.message))
            elif item.amount_minor <= 0:
                results.append(refused("invalid_amount", "amount must be positive"))
            elif len(item.currency) != 3:
                results.append(refused("invalid_currency", "currency must be an ISO 4217 code"))
            else:
                invoice = ledger.register(
                    item.account_id, item.invoice_number, item.amount_minor, item.currency
                )
                results.append({"status": invoice.status, "provider_invoice_id": invoice.provider_invoice_id})
        refused_count = sum(1 for r in results if r["status"] == "refused")
        log.info(
            "invoices registered",
            extra={"registered": len(results) - refused_count, "refused": refused_count},
        )
        # Serialised directly: FastAPI's generic encoding of a returned dict walks it in
        # Python, which for a few hundred results cost more than registering them (this
        # sandbox shares the machine with invoice-sync in benchmarks; a real provider
        # runs elsewhere).
        return JSONResponse({"results": results})

    @router.post("/v1/invoices/withdrawals", response_model=None)
    async def withdraw_batch(body: BatchWithdrawal) -> dict[str, Any] | JSONResponse:
        if (fault := await apply_fault("registration")) is not None:
            return fault
        results: list[dict[str, Any]] = []
        for item in body.invoices:
            invoice = ledger.invoices.get((item.account_id, item.invoice_number))
            if invoice is None:
                results.append(refused("unknown_invoice", "no such invoice"))
                continue
            invoice.status = "withdrawn"
            results.append({"status": invoice.status, "provider_invoice_id": invoice.provider_invoice_id})
        withdrawn = sum(1 for r in results if r["status"] == "withdrawn")
        log.info("invoices withdrawn", extra={"withdrawn": withdrawn, "unknown": len(results) - withdrawn})
        return JSONResponse({"results": results})

    @router.post("/sandbox/refusals")
    async def arm_refusal(body: RefusalRequest) -> dict[str, str]:
        refusals[(body.account_id, body.invoice_number)] = body
        log.info(
            "registration refusal armed",
            extra={"account_id": body.account_id, "invoice_number": body.invoice_number, "code": body.code},
        )
        return {"status": "armed"}

    @router.delete("/sandbox/refusals")
    async def clear_refusals() -> dict[str, str]:
        refusals.clear()
        return {"status": "cleared"}

    return router
