"""The read-model API portal backends call (JSON; OpenAPI in contracts/openapi/).

Every response says how fresh it is: the read-model version that answered, the time
of the newest event applied to the invoice (and to the whole projection), and the
next offsets of the account's partitions of `invoices` and `payments.events` that
the answer reflects. Handlers return pre-built JSON (the pydantic models below
document the shape and are checked against real responses in the tests).

Every route needs a merchant's API key (`Authorization: Bearer <key>`, 401 without a
valid one). A key reads only its merchant's accounts: any other account goes through
the very path an unknown account does, so the answer (status and body) is the same.
Text parameters that PostgreSQL cannot hold (NUL, lone surrogates) are a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from payments_shared.messaging import partition_for
from payments_shared.topics import Topic, TopicRegistry
from status_projector.adapters.queries import ReadModelQueries, Snapshot
from status_projector.domain.access import PortalKeys, Tenant
from status_projector.domain.status import (
    NotPayableReason,
    PaymentState,
    PayStatus,
    account_pay_button,
    pay_button,
)

# --- response documents ------------------------------------------------------------------


class MoneyOut(BaseModel):
    amount_minor: int = Field(description="Integer amount in the currency's minor unit")
    currency: str = Field(description="ISO 4217 code")


class CurrentPayment(BaseModel):
    payment_id: str
    state: PaymentState
    amount: MoneyOut = Field(description="Amount of this payment allocated to the invoice")


class LastProblem(BaseModel):
    reason_code: str
    message: str = Field(description="Text a portal may show")
    at: datetime


class RestrictionOut(BaseModel):
    reason_code: str | None = Field(description="The merchant policy's reason, e.g. distributor_country")
    message: str | None = Field(description="Text a portal may show (e.g. whom to pay instead)")


class RefundOut(BaseModel):
    payment_id: str
    state: Literal["requested", "refunded", "failed"]
    amount: MoneyOut = Field(description="What goes back to the customer")
    reason_code: str | None = Field(description="double_payment, late_payment or amount_mismatch")
    at: datetime


class PartitionOffset(BaseModel):
    topic: str
    partition: int
    next_offset: int = Field(description="Everything before this offset is reflected")


class Freshness(BaseModel):
    version: int = Field(description="Read-model version that answered")
    event_time: datetime | None = Field(description="occurred_at of the newest event applied to this item")
    projection_event_time: datetime | None = Field(
        description="occurred_at of the newest event the whole projection applied"
    )
    offsets: list[PartitionOffset] = Field(description="The account's partitions and how far they are read")


class InvoiceOut(BaseModel):
    account_id: str
    invoice_number: str
    order_number: str | None
    po_number: str | None
    invoice_date: date
    due_date: date
    currency: str
    total: MoneyOut
    balance: MoneyOut = Field(
        description="ERP open amount minus succeeded payments the ERP has not posted yet; never negative"
    )
    pay_status: PayStatus
    not_payable_reason: NotPayableReason | None
    pay_button: bool = Field(description="Whether the portal shows the Pay button / lets it be selected")
    pay_button_reason: str | None = Field(
        description="Why the button is hidden: provider_not_configured, pending, paid, "
        "or a not_payable reason"
    )
    current_payment: CurrentPayment | None
    last_problem: LastProblem | None = Field(description="Last rejection or failure")
    restriction: RestrictionOut | None = Field(
        description="Set while the merchant's policy does not let this invoice be paid online "
        "(pay_status not_payable, reason restricted)"
    )
    refund: RefundOut | None = Field(
        description="The latest refund of money taken for this invoice that it must not keep "
        "(paid late, twice, or in another amount). The balance does not change: that money "
        "was never counted as paid."
    )
    freshness: Freshness


class InvoicePage(BaseModel):
    account_id: str
    items: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last")
    freshness: Freshness


class CurrencyBalance(BaseModel):
    currency: str
    balance: MoneyOut
    pay_button: bool = Field(
        description="Account-level PAY: the policy lets the account pay its balance, the provider is "
        "configured and the balance is above zero"
    )
    invoices: int
    by_status: dict[str, int]


class AccountSummary(BaseModel):
    account_id: str
    balances: list[CurrencyBalance]
    pay_button: bool = Field(description="True when any currency's PAY button shows")
    pay_button_reason: str | None = Field(
        description="Why the account PAY button is hidden: the merchant policy's reason "
        "(account_balance_not_allowed), provider_not_configured or zero_balance"
    )
    pay_button_message: str | None = Field(description="Text a portal may show when the policy hides it")
    freshness: Freshness


class Problem404(BaseModel):
    detail: str


class Problem401(BaseModel):
    detail: str


# --- rendering -----------------------------------------------------------------------------


def _freshness(
    snap: Snapshot, account_id: str, topics: list[Topic], event_time: datetime | None
) -> dict[str, Any]:
    offsets = []
    for topic in topics:
        partition = partition_for(account_id.encode(), topic.partitions)
        offsets.append(
            {
                "topic": topic.name,
                "partition": partition,
                "next_offset": snap.offsets.get((topic.name, partition), 0),
            }
        )
    return {
        "version": snap.version,
        "event_time": _iso(event_time),
        "projection_event_time": _iso(snap.last_event_at),
        "offsets": offsets,
    }


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _invoice_json(
    row: asyncpg.Record, freshness: dict[str, Any], provider_configured: bool
) -> dict[str, Any]:
    currency = row["currency"]
    button, why_not = pay_button(
        row["pay_status"], row["not_payable_reason"], provider_configured=provider_configured
    )
    payment = None
    if row["current_payment_id"] is not None:
        payment = {
            "payment_id": row["current_payment_id"],
            "state": row["current_payment_state"],
            "amount": {"amount_minor": row["current_payment_amount"], "currency": currency},
        }
    problem = None
    if row["problem_code"] is not None:
        problem = {
            "reason_code": row["problem_code"],
            "message": row["problem_message"],
            "at": _iso(row["problem_at"]),
        }
    return {
        "account_id": row["account_id"],
        "invoice_number": row["invoice_number"],
        "order_number": row["order_number"],
        "po_number": row["po_number"],
        "invoice_date": _iso(row["invoice_date"]),
        "due_date": _iso(row["due_date"]),
        "currency": currency,
        "total": {"amount_minor": row["total_minor"], "currency": currency},
        "balance": {"amount_minor": row["balance_minor"], "currency": currency},
        "pay_status": row["pay_status"],
        "not_payable_reason": row["not_payable_reason"],
        "pay_button": button,
        "pay_button_reason": why_not,
        "current_payment": payment,
        "last_problem": problem,
        "restriction": (
            {"reason_code": row["restriction_code"], "message": row["restriction_message"]}
            if row["restricted"]
            else None
        ),
        "refund": (
            {
                "payment_id": row["refund_payment_id"],
                "state": row["refund_state"],
                "amount": {"amount_minor": row["refund_minor"], "currency": currency},
                "reason_code": row["refund_reason"],
                "at": _iso(row["refund_at"]),
            }
            if row["refund_payment_id"] is not None
            else None
        ),
        "freshness": {**freshness, "event_time": _iso(row["last_event_at"])},
    }


def _account_button_reason(
    balances: list[dict[str, Any]], policy: asyncpg.Record | None, provider_configured: bool
) -> dict[str, str | None]:
    if any(b["pay_button"] for b in balances):
        return {"pay_button_reason": None, "pay_button_message": None}
    if policy is not None and not policy["balance_payment_allowed"]:
        return {"pay_button_reason": policy["reason_code"], "pay_button_message": policy["message"]}
    why = "provider_not_configured" if not provider_configured else "zero_balance"
    return {"pay_button_reason": why, "pay_button_message": None}


def _json(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def encode_cursor(sort: str, due_date: date, invoice_number: str) -> str:
    raw = json.dumps([sort, due_date.isoformat(), invoice_number], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[date, str]:
    """The position after which the next page starts; 422 if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        cursor_sort, due, number = json.loads(raw)
        position = (date.fromisoformat(due), str(number))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise _invalid("cursor", "cursor is not valid") from exc
    if cursor_sort != sort:
        raise _invalid("cursor", "cursor was issued for another sort order")
    if _unstorable(position[1]):
        raise _invalid("cursor", "cursor is not valid")
    return position


def _invalid(param: str, message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": ("query", param), "msg": message}])


def _unstorable(text: str) -> bool:
    """Text PostgreSQL cannot hold: a NUL, or a lone surrogate (not encodable as UTF-8)."""
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _storable(text: str) -> str:
    if _unstorable(text):
        raise ValueError("must not contain NUL or lone surrogates")
    return text


# --- routes --------------------------------------------------------------------------------

AccountId = Annotated[
    str,
    Path(min_length=1, max_length=64, description="ERP customer account id"),
    AfterValidator(_storable),
]
InvoiceNumberPath = Annotated[str, Path(min_length=1, max_length=64), AfterValidator(_storable)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem401, "description": "No valid merchant API key"},
    404: {"model": Problem404, "description": "Unknown account or invoice (or another merchant's)"},
}
BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="merchantApiKey",
    bearerFormat="API key",
    description="The merchant's read-API key (status-projector-ops new-api-key); "
    "it reads only the merchant's own accounts",
)


async def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Tenant:
    """The merchant whose key came with the request; 401 for none or an unknown one."""
    keys: PortalKeys = request.app.state.portal_keys
    tenant = keys.tenant_for(credentials.credentials) if credentials is not None else None
    if tenant is None:
        raise HTTPException(
            401, "a valid merchant API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return tenant


Caller = Annotated[Tenant, Depends(caller)]


def build_router(pool: asyncpg.Pool, registry: TopicRegistry, *, provider_configured: bool) -> APIRouter:
    queries = ReadModelQueries(pool)
    topics = [registry.invoices, registry.payments_events]
    router = APIRouter(prefix="/v1", tags=["read model"])

    @router.get(
        "/accounts/{account_id}/invoices",
        response_model=InvoicePage,
        responses=NOT_FOUND,
        summary="List an account's invoices with their pay status",
    )
    async def list_invoices(
        tenant: Caller,
        account_id: AccountId,
        pay_status: Annotated[
            list[PayStatus] | None,
            Query(description="Only these statuses (repeat the parameter for several)"),
        ] = None,
        sort: Annotated[
            Literal["due_date", "-due_date"], Query(description="Due date, ascending or descending")
        ] = "due_date",
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        cursor: Annotated[
            str | None, Query(max_length=400, description="next_cursor of the previous page")
        ] = None,
    ) -> Response:
        after = decode_cursor(cursor, sort) if cursor else None
        visible = tenant.can_read(account_id)
        async with pool.acquire() as conn:
            snap = await queries.snapshot(conn)
            rows = (
                await queries.invoices(
                    conn,
                    snap,
                    account_id,
                    statuses=[s.value for s in pay_status] if pay_status else None,
                    descending=sort.startswith("-"),
                    after=after,
                    limit=limit + 1,
                )
                if visible
                else []
            )
            if (
                not rows
                and after is None
                and not (visible and await queries.account_known(conn, snap, account_id))
            ):
                raise HTTPException(404, f"unknown account {account_id}")
        freshness = _freshness(snap, account_id, topics, snap.last_event_at)
        page = rows[:limit]
        next_cursor = (
            encode_cursor(sort, page[-1]["due_date"], page[-1]["invoice_number"])
            if len(rows) > limit
            else None
        )
        return _json(
            {
                "account_id": account_id,
                "items": [_invoice_json(r, freshness, provider_configured) for r in page],
                "next_cursor": next_cursor,
                "freshness": freshness,
            }
        )

    @router.get(
        "/accounts/{account_id}/invoices/{invoice_number}",
        response_model=InvoiceOut,
        responses=NOT_FOUND,
        summary="One invoice with its pay status",
    )
    async def get_invoice(
        tenant: Caller, account_id: AccountId, invoice_number: InvoiceNumberPath
    ) -> Response:
        async with pool.acquire() as conn:
            snap = await queries.snapshot(conn)
            row = (
                await queries.invoice(conn, snap, account_id, invoice_number)
                if tenant.can_read(account_id)
                else None
            )
        if row is None:
            raise HTTPException(404, f"unknown invoice {invoice_number} of account {account_id}")
        freshness = _freshness(snap, account_id, topics, row["last_event_at"])
        return _json(_invoice_json(row, freshness, provider_configured))

    @router.get(
        "/accounts/{account_id}/summary",
        response_model=AccountSummary,
        responses=NOT_FOUND,
        summary="Account balance per currency and whether the account-level PAY button shows",
    )
    async def account_summary(tenant: Caller, account_id: AccountId) -> Response:
        async with pool.acquire() as conn:
            snap = await queries.snapshot(conn)
            readable = tenant.can_read(account_id)
            rows = await queries.summary(conn, snap, account_id) if readable else []
            policy = await queries.account_policy(conn, snap, account_id) if readable else None
        if not rows:
            raise HTTPException(404, f"unknown account {account_id}")
        allowed = policy is None or policy["balance_payment_allowed"]
        balances = []
        times = [r["last_event_at"] for r in rows if r["last_event_at"] is not None]
        newest = max(times) if times else None
        for r in rows:
            owed = r["balance_minor"] or 0
            balances.append(
                {
                    "currency": r["currency"],
                    "balance": {"amount_minor": owed, "currency": r["currency"]},
                    "pay_button": allowed
                    and account_pay_button(owed, provider_configured=provider_configured),
                    "invoices": r["invoices"],
                    "by_status": {s.value: r[s.value] for s in PayStatus},
                }
            )
        return _json(
            {
                "account_id": account_id,
                "balances": balances,
                "pay_button": any(b["pay_button"] for b in balances),
                **_account_button_reason(balances, policy, provider_configured),
                "freshness": _freshness(snap, account_id, topics, newest),
            }
        )

    return router


async def _validation_problem(_: Request, exc: Exception) -> Response:
    # ASCII-escaped: an echoed lone surrogate cannot be encoded as UTF-8 (it would be a 500).
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


def build_app(
    pool: asyncpg.Pool, registry: TopicRegistry, keys: PortalKeys, *, provider_configured: bool
) -> FastAPI:
    app = FastAPI(
        title="status-projector read model",
        version="1.0.0",
        description=(
            "Pay status of each invoice and the balance of each account, projected from the "
            "`invoices` and `payments.events` topics. 404: unknown account or invoice; 422: bad "
            "parameters. Every response carries `freshness`. Every call needs the merchant's API "
            "key as `Authorization: Bearer <key>` (401 without); a key reads only its merchant's "
            "accounts, and any other account answers exactly as an unknown one (404)."
        ),
    )
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.state.portal_keys = keys
    app.include_router(build_router(pool, registry, provider_configured=provider_configured))
    return app
