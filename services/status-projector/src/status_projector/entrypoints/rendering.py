"""Rows of the read model as the read API's JSON, its cursors, and the text checks of
its parameters."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from payments_contracts.topics import Topic
from payments_platform.messaging import partition_for
from status_projector.adapters.queries import Snapshot
from status_projector.domain.status import (
    pay_button,
)


def freshness_of(
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
        "event_time": event_time,
        "projection_event_time": snap.last_event_at,
        "offsets": offsets,
    }


def invoice_json(row: asyncpg.Record, freshness: dict[str, Any], provider_configured: bool) -> dict[str, Any]:
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
            "at": row["problem_at"],
        }
    return {
        "account_id": row["account_id"],
        "invoice_number": row["invoice_number"],
        "order_number": row["order_number"],
        "po_number": row["po_number"],
        "invoice_date": row["invoice_date"],
        "due_date": row["due_date"],
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
                "at": row["refund_at"],
            }
            if row["refund_payment_id"] is not None
            else None
        ),
        "freshness": {**freshness, "event_time": row["last_event_at"]},
    }


def account_button_reason(
    balances: list[dict[str, Any]], policy: asyncpg.Record | None, provider_configured: bool
) -> dict[str, str | None]:
    if any(b["pay_button"] for b in balances):
        return {"pay_button_reason": None, "pay_button_message": None}
    if policy is not None and not policy["balance_payment_allowed"]:
        return {"pay_button_reason": policy["reason_code"], "pay_button_message": policy["message"]}
    owed = [b for b in balances if b["balance"]["amount_minor"] > 0]
    why = next((b["pay_button_reason"] for b in owed), None) or (
        "provider_not_configured" if not provider_configured else "zero_balance"
    )
    return {"pay_button_reason": why, "pay_button_message": None}


def json_response(body: dict[str, Any]) -> Response:
    # orjson writes dates and times in C, as isoformat() would: formatting them in Python
    # was 17% of a read request's CPU and json.dumps 34%
    # (bench/results/2026-12-02T0104Z.md#notes).
    return Response(orjson.dumps(body), media_type="application/json")


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


def storable(text: str) -> str:
    if _unstorable(text):
        raise ValueError("must not contain NUL or lone surrogates")
    return text
