"""The portal's pages and the small JSON API its JavaScript calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from demo_portal import handlers
from demo_portal.domain.account import balances
from demo_portal.domain.money import BadAmount, plain_amount, show_money, total_of
from demo_portal.domain.pay_column import Cell, PayCell, detail_button, pay_cell
from demo_portal.domain.portal import Merchant, Style
from demo_portal.handlers import Portal, UnknownAccount
from payments_contracts.payments import BillingAddress
from payments_portal_client import NotFound
from payments_portal_client.read_model import InvoiceOut

HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["money"] = lambda m: show_money(m.amount_minor, m.currency)


class PayItemIn(BaseModel):
    invoice_number: str
    amount: str | None = None


class PayIn(BaseModel):
    invoices: list[PayItemIn] = Field(min_length=1)
    method: Literal["guest_checkout", "payer_portal", "card", "remittance"]
    billing: BillingAddress | None = None
    name_on_card: str | None = None
    channel: Literal["check", "ach", "wire"] | None = None
    selected: bool = False


class CancelIn(BaseModel):
    payment_id: UUID


class PayBalanceIn(BaseModel):
    currency: str | None = None


class AmountIn(BaseModel):
    amount: str
    currency: str


class TotalIn(BaseModel):
    amounts: list[AmountIn]


def row(invoice: InvoiceOut, style: Style) -> dict[str, Any]:
    return {
        "invoice": invoice,
        "cell": pay_cell(invoice, style),
        "action": detail_button(invoice, style),
        "balance": show_money(invoice.balance.amount_minor, invoice.currency),
        "balance_plain": plain_amount(invoice.balance.amount_minor, invoice.currency),
    }


def row_json(invoice: InvoiceOut, style: Style) -> dict[str, Any]:
    """One row for the page's poll, its cells rendered by the same macros as the page."""
    cells = templates.get_template("cells.html").module
    rendered = row(invoice, style)
    cell: PayCell = rendered["cell"]
    return {
        "cell_html": str(cells.pay_cell(rendered, style == Style.PAY_SELECTED)),  # type: ignore[attr-defined]
        "select_html": str(cells.select_cell(rendered)),  # type: ignore[attr-defined]
        "status_html": str(cells.status_badge(rendered)),  # type: ignore[attr-defined]
        "action_html": str(cells.detail_action(rendered)),  # type: ignore[attr-defined]
        "invoice_number": invoice.invoice_number,
        "cell": cell.cell.value,
        "label": cell.label,
        "payable": cell.payable,
        "reason": cell.reason,
        "balance": rendered["balance"],
        "balance_plain": rendered["balance_plain"],
        "currency": invoice.currency,
    }


def answer_json(answer: handlers.Answer) -> dict[str, Any]:
    """What the page does next; remittance details come rendered by the page's macro."""
    body = {k: v for k, v in vars(answer).items() if k != "remittance"}
    if answer.remittance is not None:
        cells = templates.get_template("cells.html").module
        body["remittance_html"] = str(cells.remittance(answer.remittance))  # type: ignore[attr-defined]
    return body


def build_routes(app: FastAPI, portal: Portal, poll_interval_ms: int) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def merchant_or_404(account_id: str) -> Merchant:
        try:
            return portal.merchant(account_id)
        except UnknownAccount:
            raise HTTPException(404, "No such account in this portal") from None

    def page(request: Request, template: str, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(
            request,
            template,
            {"portals": portal.portals, "poll_interval_ms": poll_interval_ms, **context},
        )

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # Browsers ask for /favicon.ico on pages that link no icon (and some always do).
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml")

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        first = portal.portals.accounts[0][1] if portal.portals.accounts else None
        if first is None:
            return HTMLResponse("<p>No merchants configured.</p>")
        return RedirectResponse(f"/accounts/{first}", status_code=303)

    @app.get("/accounts/{account_id}", response_class=HTMLResponse, include_in_schema=False)
    async def account_page(request: Request, account_id: str) -> HTMLResponse:
        merchant = merchant_or_404(account_id)
        invoices, summary = await handlers.account(portal, account_id)
        rows = [row(i, merchant.style) for i in invoices]
        restricted = next(
            (i.restriction.message for i in invoices if i.restriction and i.restriction.message), None
        )
        return page(
            request,
            "account.html",
            merchant=merchant,
            account_id=account_id,
            rows=rows,
            balances=balances(summary, invoices, merchant.style),
            restricted=restricted,
            pay_selected=merchant.style == Style.PAY_SELECTED,
            Cell=Cell,
        )

    @app.get(
        "/accounts/{account_id}/invoices/{invoice_number}",
        response_class=HTMLResponse,
        include_in_schema=False,
    )
    async def invoice_page(request: Request, account_id: str, invoice_number: str) -> HTMLResponse:
        merchant = merchant_or_404(account_id)
        try:
            invoice = await portal.reader(account_id).invoice(account_id, invoice_number)
        except NotFound:
            raise HTTPException(404, "No such invoice") from None
        return page(
            request,
            "invoice.html",
            merchant=merchant,
            account_id=account_id,
            r=row(invoice, merchant.style),
        )

    @app.get("/api/accounts/{account_id}/rows")
    async def rows(account_id: str) -> dict[str, Any]:
        merchant = merchant_or_404(account_id)
        invoices, summary = await handlers.account(portal, account_id)
        cells = templates.get_template("cells.html").module
        shown = balances(summary, invoices, merchant.style)
        return {
            "rows": [row_json(i, merchant.style) for i in invoices],
            "balance_card_html": str(cells.balance_card(shown)),  # type: ignore[attr-defined]
        }

    @app.post("/api/accounts/{account_id}/invoices/{invoice_number}/check")
    async def check(account_id: str, invoice_number: str) -> JSONResponse:
        merchant_or_404(account_id)
        checked = await handlers.check_before_dialog(portal, account_id, invoice_number)
        if isinstance(checked, str):
            return JSONResponse({"ok": False, "message": checked}, status_code=409)
        return JSONResponse({"ok": True, **row_json(checked, portal.merchant(account_id).style)})

    @app.post("/api/accounts/{account_id}/pay")
    async def pay(account_id: str, body: PayIn) -> dict[str, Any]:
        merchant_or_404(account_id)
        order = handlers.PayOrder(
            items=tuple(handlers.PayItem(i.invoice_number, i.amount) for i in body.invoices),
            method=body.method,
            billing=body.billing,
            name_on_card=body.name_on_card,
            channel=body.channel,
            selected=body.selected,
        )
        return answer_json(await handlers.pay(portal, account_id, order))

    @app.post("/api/accounts/{account_id}/pay-balance")
    async def pay_balance(account_id: str, body: PayBalanceIn | None = None) -> dict[str, Any]:
        merchant_or_404(account_id)
        currency = body.currency if body is not None else None
        return answer_json(await handlers.pay_account_balance(portal, account_id, currency))

    @app.post("/api/accounts/{account_id}/cancel")
    async def cancel(account_id: str, body: CancelIn) -> dict[str, Any]:
        merchant_or_404(account_id)
        return answer_json(await handlers.cancel(portal, account_id, body.payment_id))

    @app.post("/api/accounts/{account_id}/total")
    async def total(account_id: str, body: TotalIn) -> JSONResponse:
        # The page adds no money itself: every amount it shows is formatted here.
        merchant_or_404(account_id)
        try:
            amount = total_of((a.amount, a.currency) for a in body.amounts)
        except BadAmount as bad:
            return JSONResponse({"ok": False, "message": str(bad)}, status_code=422)
        return JSONResponse({"ok": True, "text": show_money(amount.amount_minor, amount.currency)})

