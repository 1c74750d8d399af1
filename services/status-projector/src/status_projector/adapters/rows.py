"""Rows of the read model's tables <-> its entities, as asyncpg reads and writes them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _quoted_utf8
from json.encoder import encode_basestring_ascii as _quoted
from typing import Any

from status_projector.domain.model import Invoice, Payment, Problem, Refund, Restriction
from status_projector.domain.status import NotPayableReason, PaymentState, PayStatus

# --- the invoice table's columns ---------------------------------------------------------

# Invoice columns in row order: the key, the ERP's facts (change only with invoice.synced
# or invoice.balance_changed), then what payment and lifecycle events change. A batch
# of payment events rewrites only the second group.
KEY = (("account_id", "text"), ("invoice_number", "text"))
FACTS = (
    ("currency", "text"),
    ("order_number", "text"),
    ("po_number", "text"),
    ("invoice_date", "date"),
    ("due_date", "date"),
    ("total_minor", "bigint"),
    ("open_amount_minor", "bigint"),
    ("erp_status", "text"),
    ("erp_version", "bigint"),
    ("billing_country", "text"),
    # jsonb, not text[]: the batch UPDATE passes each column as an array parameter, and
    # unnest() would flatten an array of arrays into one row per element.
    ("posted_refs", "jsonb"),
)
STATUS = (
    ("registration", "text"),
    ("registration_version", "bigint"),
    ("closed_reason", "text"),
    ("closed_version", "bigint"),
    ("succeeded", "jsonb"),
    ("current_payment_id", "text"),
    ("current_payment_state", "text"),
    ("current_payment_amount", "bigint"),
    ("current_payment_at", "timestamptz"),
    ("problem_code", "text"),
    ("problem_message", "text"),
    ("problem_at", "timestamptz"),
    ("restricted", "boolean"),
    ("restriction_code", "text"),
    ("restriction_message", "text"),
    ("restriction_at", "timestamptz"),
    ("refund_payment_id", "text"),
    ("refund_state", "text"),
    ("refund_minor", "bigint"),
    ("refund_reason", "text"),
    ("refund_at", "timestamptz"),
    ("last_event_at", "timestamptz"),
    ("balance_minor", "bigint"),
    ("pay_status", "text"),
    ("not_payable_reason", "text"),
)
_NOT_NULL = {
    "account_id", "invoice_number", "currency", "invoice_date", "due_date", "total_minor",
    "open_amount_minor", "erp_status", "erp_version", "billing_country", "posted_refs",
    "registration_version", "closed_version", "succeeded", "restricted", "balance_minor", "pay_status",
}  # fmt: skip
INVOICE_DDL = [(c, t + (" NOT NULL" if c in _NOT_NULL else "")) for c, t in (*KEY, *FACTS, *STATUS)]
INVOICE_COLUMNS = [c for c, _ in (*KEY, *FACTS, *STATUS)]
FACTS_END = len(KEY) + len(FACTS)  # values[2:FACTS_END] are the facts

# Lookups by value without the cost of calling the enum (rows are read by the thousand).
_STATES: dict[str, PaymentState] = PaymentState._value2member_map_  # type: ignore[assignment]
_PAY_STATUSES: dict[str, PayStatus] = PayStatus._value2member_map_  # type: ignore[assignment]
_REASONS: dict[str, NotPayableReason] = NotPayableReason._value2member_map_  # type: ignore[assignment]


def _dump_amounts(amounts: dict[str, int]) -> str:
    # Same text as PostgreSQL's jsonb output for these small maps, so an unchanged row
    # compares equal to what was loaded; and as json.dumps(amounts, sort_keys=True), without
    # its encoder set up per call (rows are written by the thousand).
    if not amounts:
        return "{}"
    return "{" + ", ".join(f"{_quoted(k)}: {amounts[k]:d}" for k in sorted(amounts)) + "}"


def _dump_refs(refs: list[str]) -> str:
    """As json.dumps(sorted(refs), ensure_ascii=False)."""
    return "[" + ", ".join(_quoted_utf8(r) for r in sorted(refs)) + "]" if refs else "[]"


def _load_amounts(text: str) -> dict[str, int]:
    return json.loads(text) if text != "{}" else {}


def invoice_from_row(row: tuple[Any, ...]) -> Invoice:
    (
        account_id, invoice_number, currency, order_number, po_number, invoice_date, due_date,
        total_minor, open_amount_minor, erp_status, erp_version, billing_country, posted_refs,
        registration, registration_version, closed_reason, closed_version, succeeded,
        current_payment_id, current_payment_state, current_payment_amount, current_payment_at,
        problem_code, problem_message, problem_at,
        restricted, restriction_code, restriction_message, restriction_at,
        refund_payment_id, refund_state, refund_minor, refund_reason, refund_at,
        last_event_at, balance_minor, pay_status, not_payable_reason,
    ) = row  # fmt: skip
    return Invoice(
        account_id=account_id,
        invoice_number=invoice_number,
        currency=currency,
        order_number=order_number,
        po_number=po_number,
        invoice_date=invoice_date,
        due_date=due_date,
        total_minor=total_minor,
        open_amount_minor=open_amount_minor,
        erp_status=erp_status,
        erp_version=erp_version,
        billing_country=billing_country,
        posted_refs=json.loads(posted_refs) if posted_refs != "[]" else [],
        registration=registration,
        registration_version=registration_version,
        closed_reason=closed_reason,
        closed_version=closed_version,
        succeeded=_load_amounts(succeeded),
        current_payment_id=current_payment_id,
        current_payment_state=_STATES[current_payment_state] if current_payment_state is not None else None,
        current_payment_amount=current_payment_amount,
        current_payment_at=current_payment_at,
        last_problem=Problem(problem_code, problem_message, problem_at) if problem_code is not None else None,
        restriction=(
            Restriction(restricted, restriction_code, restriction_message, restriction_at)
            if restriction_at is not None
            else None
        ),
        refund=(
            Refund(refund_payment_id, refund_state, refund_minor, refund_reason, refund_at)
            if refund_payment_id is not None
            else None
        ),
        last_event_at=last_event_at,
        balance_minor=balance_minor,
        pay_status=_PAY_STATUSES[pay_status],
        not_payable_reason=_REASONS[not_payable_reason] if not_payable_reason is not None else None,
    )


def invoice_values(inv: Invoice) -> tuple[Any, ...]:
    """The row of an invoice, in INVOICE_COLUMNS order, typed as asyncpg returns it."""
    problem = inv.last_problem
    restriction = inv.restriction
    refund = inv.refund
    state = inv.current_payment_state
    reason = inv.not_payable_reason
    return (
        inv.account_id,
        inv.invoice_number,
        inv.currency,
        inv.order_number,
        inv.po_number,
        inv.invoice_date,
        inv.due_date,
        inv.total_minor,
        inv.open_amount_minor,
        inv.erp_status,
        inv.erp_version,
        inv.billing_country,
        _dump_refs(inv.posted_refs),
        inv.registration,
        inv.registration_version,
        inv.closed_reason,
        inv.closed_version,
        _dump_amounts(inv.succeeded),
        inv.current_payment_id,
        state.value if state is not None else None,
        inv.current_payment_amount,
        inv.current_payment_at,
        problem.reason_code if problem else None,
        problem.message if problem else None,
        problem.at if problem else None,
        restriction is not None and restriction.restricted,
        restriction.reason_code if restriction else None,
        restriction.message if restriction else None,
        restriction.at if restriction else None,
        refund.payment_id if refund else None,
        refund.state if refund else None,
        refund.amount_minor if refund else None,
        refund.reason_code if refund else None,
        refund.at if refund else None,
        inv.last_event_at,
        inv.balance_minor,
        inv.pay_status.value,
        reason.value if reason is not None else None,
    )


PAYMENT_DDL = (
    ("payment_id", "text"),
    ("account_id", "text"),
    ("state", "text"),
    ("state_at", "timestamptz"),
    ("requested_at", "timestamptz"),
    ("currency", "text"),
    ("allocations", "jsonb"),
)
PAYMENT_COLUMNS = [c for c, _ in PAYMENT_DDL]


def payment_from_row(row: tuple[Any, ...]) -> Payment:
    payment_id, account_id, state, state_at, requested_at, currency, allocations = row
    return Payment(
        payment_id=payment_id,
        account_id=account_id,
        state=_STATES[state],
        state_at=state_at,
        requested_at=requested_at,
        currency=currency,
        allocations=_load_amounts(allocations),
    )


def payment_values(p: Payment) -> tuple[Any, ...]:
    return (
        p.payment_id,
        p.account_id,
        p.state.value,
        p.state_at,
        p.requested_at,
        p.currency,
        _dump_amounts(p.allocations),
    )


@dataclass(frozen=True)
class Stage:
    """A temporary table rows are COPY'd into before one set-based UPDATE of a batch."""

    name: str
    columns: Sequence[tuple[str, str]]

    @property
    def ddl(self) -> str:
        columns = ", ".join(f"{c} {t}" for c, t in self.columns)
        return f"CREATE TEMP TABLE IF NOT EXISTS {self.name} ({columns}) ON COMMIT DELETE ROWS"


def merge_from_stage(
    stage: str, table: str, key: Sequence[tuple[str, str]], columns: Sequence[tuple[str, str]]
) -> str:
    """UPDATE of `columns` from the staging table's rows, matched on `key`. The rows are
    deleted from the stage by the same statement: a transaction may merge more than once
    (one message at a time after a failed batch), and an UPDATE that meets a key twice
    takes either row, so an earlier merge's rows must not be there."""
    sets = ", ".join(f"{c} = v.{c}" for c, _ in columns)
    match = " AND ".join(f"t.{c} = v.{c}" for c, _ in key)
    return f"WITH v AS (DELETE FROM {stage} RETURNING *) UPDATE {table} AS t SET {sets} FROM v WHERE {match}"
