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

Reads go to a streaming replica when one is configured, else (and when it cannot answer)
the primary (adapters/read_source.py). While no database answers, every route answers 503
with Retry-After and a problem body within the deadline, never 500 and never a hang. A
caller that passes `min_offset` (the `freshness.offsets` of a response, or the position of
its own message) gets an answer that reflects at least those offsets, or a 503 saying the
read model is behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, StringConstraints

from payments_contracts.topics import TopicRegistry
from status_projector.adapters.queries import ReadModelQueries, Snapshot
from status_projector.adapters.read_source import ReadModelBehind, ReadModelUnavailable, ReadSources
from status_projector.domain.access import PortalKeys, Tenant
from status_projector.domain.status import (
    PayStatus,
    account_button_hidden_because,
    account_pay_button,
)

from .documents import AccountSummary, InvoiceOut, InvoicePage, Problem401, Problem404, Problem503
from .rendering import (
    account_button_reason,
    decode_cursor,
    encode_cursor,
    freshness_of,
    invoice_json,
    json_response,
    storable,
)

__all__ = ["AccountSummary", "InvoiceOut", "InvoicePage", "build_app", "decode_cursor", "encode_cursor"]

# --- routes --------------------------------------------------------------------------------

AccountId = Annotated[
    str,
    Path(min_length=1, max_length=64, description="ERP customer account id"),
    AfterValidator(storable),
]
InvoiceNumberPath = Annotated[
    str, Path(min_length=1, max_length=64, description="The ERP's invoice number"), AfterValidator(storable)
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem401, "description": "No valid merchant API key"},
    404: {"model": Problem404, "description": "Unknown account or invoice (or another merchant's)"},
}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {
        "model": Problem503,
        "description": "No database answered within the deadline (1.5 s by default), or none has "
        "applied the `min_offset` passed yet. Retry after `Retry-After` seconds.",
        "headers": {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        },
        "content": {"application/problem+json": {}},
    }
}
READ_ERRORS = {**NOT_FOUND, **UNAVAILABLE}
MIN_OFFSET = r"^[A-Za-z0-9._-]{1,249}:[0-9]{1,9}:[0-9]{1,18}$"
MinOffsets = Annotated[
    list[Annotated[str, StringConstraints(pattern=MIN_OFFSET)]] | None,
    Query(
        description="`topic:partition:next_offset` (repeatable): answer only from a read model that "
        "has applied everything before that offset, e.g. the `freshness.offsets` of an earlier "
        "response, or the offset + 1 of the caller's own message on `payments.events`. Waits up to "
        "1 s for a replica to catch up, then asks the primary; 503 (retry) if neither has.",
        max_length=8,
    ),
]
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


def wanted_offsets(values: list[str] | None, topics: set[str]) -> dict[tuple[str, int], int]:
    """`min_offset` values as {(topic, partition): next offset}; 422 for a malformed one or
    a topic this read model does not read (it would never be reached)."""
    wanted: dict[tuple[str, int], int] = {}
    for index, value in enumerate(values or []):
        topic, partition, offset = value.rsplit(":", 2)
        if topic not in topics:
            raise RequestValidationError(
                [
                    {
                        "type": "value_error",
                        "loc": ["query", "min_offset", index],
                        "msg": f"the read model does not read topic {topic}",
                        "input": value,
                    }
                ]
            )
        key = (topic, int(partition))
        wanted[key] = max(wanted.get(key, 0), int(offset))
    return wanted


@dataclass(frozen=True)
class Read:
    snap: Snapshot
    rows: list[asyncpg.Record]
    known: bool = False
    policy: asyncpg.Record | None = None


def reaches(wanted: dict[tuple[str, int], int]) -> Any:
    if not wanted:
        return None

    def reached(read: Read) -> bool:
        return all(read.snap.offsets.get(key, 0) >= offset for key, offset in wanted.items())

    return reached


def build_router(reads: ReadSources, registry: TopicRegistry, *, provider_configured: bool) -> APIRouter:
    queries = ReadModelQueries(reads.primary)
    topics = [registry.invoices, registry.payments_events]
    topic_names = {t.name for t in topics}
    router = APIRouter(prefix="/v1", tags=["read model"])

    @router.get(
        "/accounts/{account_id}/invoices",
        response_model=InvoicePage,
        responses=READ_ERRORS,
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
        limit: Annotated[int, Query(ge=1, le=500, description="Invoices per page")] = 50,
        cursor: Annotated[
            str | None, Query(max_length=400, description="next_cursor of the previous page")
        ] = None,
        min_offset: MinOffsets = None,
    ) -> Response:
        after = decode_cursor(cursor, sort) if cursor else None
        wanted = wanted_offsets(min_offset, topic_names)
        visible = tenant.can_read(account_id)

        async def work(conn: asyncpg.Connection) -> Read:
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
            known = bool(rows) or (visible and await queries.account_known(conn, snap, account_id))
            return Read(snap, rows, known)

        read = await reads.read(work, reached=reaches(wanted))
        snap, rows = read.snap, read.rows
        if not rows and after is None and not read.known:
            raise HTTPException(404, f"unknown account {account_id}")
        freshness = freshness_of(snap, account_id, topics, snap.last_event_at)
        page = rows[:limit]
        next_cursor = (
            encode_cursor(sort, page[-1]["due_date"], page[-1]["invoice_number"])
            if len(rows) > limit
            else None
        )
        return json_response(
            {
                "account_id": account_id,
                "items": [invoice_json(r, freshness, provider_configured) for r in page],
                "next_cursor": next_cursor,
                "freshness": freshness,
            }
        )

    @router.get(
        "/accounts/{account_id}/invoices/{invoice_number}",
        response_model=InvoiceOut,
        responses=READ_ERRORS,
        summary="One invoice with its pay status",
    )
    async def get_invoice(
        tenant: Caller,
        account_id: AccountId,
        invoice_number: InvoiceNumberPath,
        min_offset: MinOffsets = None,
    ) -> Response:
        wanted = wanted_offsets(min_offset, topic_names)
        readable = tenant.can_read(account_id)

        async def work(conn: asyncpg.Connection) -> Read:
            snap = await queries.snapshot(conn)
            row = await queries.invoice(conn, snap, account_id, invoice_number) if readable else None
            return Read(snap, [row] if row is not None else [])

        read = await reads.read(work, reached=reaches(wanted))
        snap, row = read.snap, (read.rows[0] if read.rows else None)
        if row is None:
            raise HTTPException(404, f"unknown invoice {invoice_number} of account {account_id}")
        freshness = freshness_of(snap, account_id, topics, row["last_event_at"])
        return json_response(invoice_json(row, freshness, provider_configured))

    @router.get(
        "/accounts/{account_id}/summary",
        response_model=AccountSummary,
        responses=READ_ERRORS,
        summary="Account balance per currency and whether the account-level PAY button shows",
    )
    async def account_summary(
        tenant: Caller, account_id: AccountId, min_offset: MinOffsets = None
    ) -> Response:
        wanted = wanted_offsets(min_offset, topic_names)
        readable = tenant.can_read(account_id)

        async def work(conn: asyncpg.Connection) -> Read:
            snap = await queries.snapshot(conn)
            rows = await queries.summary(conn, snap, account_id) if readable else []
            policy = await queries.account_policy(conn, snap, account_id) if readable else None
            return Read(snap, rows, policy=policy)

        read = await reads.read(work, reached=reaches(wanted))
        snap, rows, policy = read.snap, read.rows, read.policy
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
                    and account_pay_button(
                        owed,
                        provider_configured=provider_configured,
                        pending=r[PayStatus.PENDING.value],
                        unregistered=r["unregistered"],
                    ),
                    "pay_button_reason": account_button_hidden_because(
                        owed,
                        provider_configured=provider_configured,
                        pending=r[PayStatus.PENDING.value],
                        unregistered=r["unregistered"],
                    ),
                    "invoices": r["invoices"],
                    "by_status": {s.value: r[s.value] for s in PayStatus},
                }
            )
        return json_response(
            {
                "account_id": account_id,
                "balances": balances,
                "pay_button": any(b["pay_button"] for b in balances),
                **account_button_reason(balances, policy, provider_configured),
                "freshness": freshness_of(snap, account_id, topics, newest),
            }
        )

    return router


async def _validation_problem(_: Request, exc: Exception) -> Response:
    # ASCII-escaped: an echoed lone surrogate cannot be encoded as UTF-8 (it would be a 500).
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


async def _unavailable(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ReadModelUnavailable)
    behind = isinstance(exc, ReadModelBehind)
    body = {
        "type": "urn:payments:read-model:" + ("behind" if behind else "unavailable"),
        "title": "Read model behind the offsets asked for" if behind else "Read model unavailable",
        "status": 503,
        "detail": exc.detail,
        "retry_after_s": exc.retry_after_s,
    }
    return Response(
        json.dumps(body),
        status_code=503,
        media_type="application/problem+json",
        headers={"Retry-After": str(exc.retry_after_s)},
    )


def build_app(
    pool: asyncpg.Pool,
    registry: TopicRegistry,
    keys: PortalKeys,
    *,
    provider_configured: bool,
    replica: asyncpg.Pool | None = None,
    read_deadline_s: float = 1.5,
    consistency_wait_s: float = 1.0,
) -> FastAPI:
    app = FastAPI(
        title="status-projector read model",
        version="1.0.0",
        description=(
            "Pay status of each invoice and the balance of each account, projected from the "
            "`invoices` and `payments.events` topics. 404: unknown account or invoice; 422: bad "
            "parameters; 503 (with Retry-After): no database answered in time, or none has applied "
            "the `min_offset` passed yet. Every response carries `freshness`. Every call needs the "
            "merchant's API key as `Authorization: Bearer <key>` (401 without); a key reads only its "
            "merchant's accounts, and any other account answers exactly as an unknown one (404)."
        ),
    )
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(ReadModelUnavailable, _unavailable)
    app.state.portal_keys = keys
    reads = ReadSources(pool, replica, deadline_s=read_deadline_s, consistency_wait_s=consistency_wait_s)
    app.state.read_sources = reads
    app.include_router(build_router(reads, registry, provider_configured=provider_configured))
    return app
