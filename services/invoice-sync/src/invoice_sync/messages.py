"""Canonical events on `invoices`, built from what the domain says happened.

Every event carries the correlation of the ERP document that caused it: the consumer
passes the document's envelope, the registration worker the document stored with the
invoice.

Events are written straight to their contract's JSON (`pydantic_core.to_json` of plain
dicts: the same serializer, hence the same bytes, as `model_dump_json`) instead of
constructing the pydantic models first: every value was validated on the way in (ERP
documents are decoded and normalised, currencies checked), and building the models
cost more than the rest of applying a document. tests/unit/test_invoice_sync_messages.py
validates what is built here against the contracts and checks it is byte-for-byte what
the contract models serialise to.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from pydantic_core import to_json

from invoice_sync.domain.mirror import BalanceChanged, Closed, Happening, Synced
from invoice_sync.domain.model import Invoice, Payable
from invoice_sync.domain.registration import Registered, RegistrationFailed, Result
from invoice_sync.settings import SERVICE
from payments_contracts import Envelope, utc_now
from payments_platform import tracing
from payments_platform.messaging.outbox import OutgoingMessage, encoded_size_over


@dataclass(frozen=True, slots=True)
class Event:
    """A canonical event, serialised: its envelope's JSON plus what the relay needs."""

    type: str
    event_id: str
    account_id: str
    body: bytes
    causation_id: UUID | str | None = None

    def outgoing(self, topic: str) -> OutgoingMessage:
        traceparent = tracestate = None
        if tracing.ENABLED:
            traceparent, tracestate = tracing.context_for(self.causation_id)
        return OutgoingMessage(
            topic, self.account_id.encode(), self.body, {"type": self.type, "event_id": self.event_id},
            traceparent, tracestate,
        )

    def size_over(self, limit: int) -> int | None:
        """Its bytes on the broker, when over `limit` (a topic's max.message.bytes)."""
        return encoded_size_over(self.outgoing(""), limit)


@dataclass(frozen=True, slots=True)
class Cause:
    account_id: str
    correlation_id: UUID | str
    causation_id: UUID | str | None

    @classmethod
    def of(cls, message: Envelope) -> Cause:
        return cls(message.account_id, message.correlation_id, message.event_id)

    @classmethod
    def stored_with(cls, invoice: Payable) -> Cause:
        """The ERP document that last changed the invoice (worker-side events)."""
        return cls.stored(invoice.account_id, invoice.correlation_id, invoice.source_event_id)

    @classmethod
    def stored(
        cls, account_id: str, correlation_id: UUID | str | None, source_event_id: UUID | str | None
    ) -> Cause:
        return cls(account_id, correlation_id or uuid4(), source_event_id)


# The RFC 4122 variant bits (10xx) in place of the top two bits of a random hex digit.
_VARIANT = {f"{d:x}": "89ab"[d & 3] for d in range(16)}


def _random_uuids(per_read: int = 512) -> Iterator[str]:
    """Random (version 4) UUIDs as text, as `str(uuid4())` writes them, from one read of
    the OS's random source per `per_read` ids: `uuid4()` costs a system call and an
    object per id, a noticeable share of building an event."""
    while True:
        raw = os.urandom(16 * per_read).hex()
        for s in range(0, 32 * per_read, 32):
            yield (
                f"{raw[s : s + 8]}-{raw[s + 8 : s + 12]}-4{raw[s + 13 : s + 16]}-"
                f"{_VARIANT[raw[s + 16]]}{raw[s + 17 : s + 20]}-{raw[s + 20 : s + 32]}"
            )


_event_ids = _random_uuids()


def new_event_id() -> str:
    return next(_event_ids)


def _event(type_: str, cause: Cause, payload: dict[str, Any], occurred_at: datetime | None) -> Event:
    event_id = next(_event_ids)
    body = to_json(
        {
            "event_id": event_id,
            "type": type_,
            "schema_version": 1,
            "occurred_at": occurred_at or utc_now(),
            "producer": SERVICE,
            "correlation_id": cause.correlation_id,
            "causation_id": cause.causation_id,
            "account_id": cause.account_id,
            "payload": payload,
        }
    )
    return Event(type_, event_id, cause.account_id, body, cause.causation_id)


def _money(amount_minor: int, currency: str) -> dict[str, Any]:
    return {"amount_minor": amount_minor, "currency": currency}


def happened(happening: Happening, cause: Cause, occurred_at: datetime | None = None) -> Event:
    invoice = happening.invoice
    if isinstance(happening, Synced):
        return _event("invoice.synced", cause, synced_payload(invoice), occurred_at)
    if isinstance(happening, BalanceChanged):
        assert invoice.details is not None
        return _event(
            "invoice.balance_changed",
            cause,
            {
                "invoice_number": invoice.invoice_number,
                "erp_version": invoice.erp_version,
                "previous_open_amount": _money(happening.previous_open_minor, happening.previous_currency),
                "open_amount": _money(invoice.details.open_minor, invoice.details.currency),
            },
            occurred_at,
        )
    assert isinstance(happening, Closed)
    return _event(
        "invoice.closed",
        cause,
        {
            "invoice_number": invoice.invoice_number,
            "erp_version": invoice.erp_version,
            "reason": happening.reason,
        },
        occurred_at,
    )


def synced_payload(invoice: Invoice) -> dict[str, Any]:
    details = invoice.details
    assert details is not None
    currency = details.currency
    return {
        "invoice_number": invoice.invoice_number,
        "erp_version": invoice.erp_version,
        "order_number": details.order_number,
        "po_number": details.po_number,
        "invoice_date": details.invoice_date,
        "due_date": details.due_date,
        "total": _money(details.total_minor, currency),
        "open_amount": _money(details.open_minor, currency),
        "erp_status": invoice.erp_status,
        "billing_country": details.billing_country,
        "posted_payments": [
            {"reference": p.reference, "amount": _money(p.amount_minor, currency)}
            for p in details.posted_payments
        ],
    }


def registered(
    cause: Cause,
    *,
    invoice_number: str,
    erp_version: int,
    provider_invoice_id: str,
    amount_minor: int,
    currency: str,
    occurred_at: datetime | None = None,
) -> Event:
    return _event(
        "invoice.registered",
        cause,
        {
            "invoice_number": invoice_number,
            "erp_version": erp_version,
            "provider_invoice_id": provider_invoice_id,
            "amount": _money(amount_minor, currency),
        },
        occurred_at,
    )


def registration_result(result: Result, occurred_at: datetime | None = None) -> Event:
    invoice = result.invoice
    cause = Cause.stored_with(invoice)
    if isinstance(result, Registered):
        assert invoice.currency is not None
        return registered(
            cause,
            invoice_number=invoice.invoice_number,
            erp_version=invoice.erp_version,
            provider_invoice_id=result.provider_invoice_id,
            amount_minor=result.amount_minor,
            currency=invoice.currency,
            occurred_at=occurred_at,
        )
    assert isinstance(result, RegistrationFailed)
    return _event(
        "invoice.registration_failed",
        cause,
        {
            "invoice_number": invoice.invoice_number,
            "erp_version": result.erp_version,
            "reason_code": result.code,
            "message": result.message,
        },
        occurred_at,
    )
