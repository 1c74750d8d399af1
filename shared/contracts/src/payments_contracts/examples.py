"""One example per message a team produces, written into the message's JSON Schema
(`examples`). docs/integration.md and the contract tests start from these."""

from __future__ import annotations

from typing import Any

_ENVELOPE = {
    "schema_version": 1,
    "occurred_at": "2026-12-01T09:30:00Z",
    "causation_id": None,
    "account_id": "C-10042",
}


def _header(event_id: str, type_: str, producer: str) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": type_,
        "producer": producer,
        "correlation_id": event_id,
        **_ENVELOPE,
    }


INVOICE = {
    "invoice_number": "INV-1001",
    "version": 3,
    "order_number": "SO-5521",
    "po_number": "PO-88",
    "invoice_date": "2026-11-02",
    "due_date": "2026-12-02",
    "currency": "USD",
    "total": "1250.00",
    "open_amount": "1250.00",
    "status": "open",
    "billing_country": "US",
    "posted_payments": [],
}

GUEST = {
    "kind": "guest_checkout",
    "name_on_card": "Ada Lovelace",
    "billing_address": {
        "email": "ap@example.com",
        "street": "1 Main St",
        "address_line2": None,
        "country": "US",
        "postal_code": "10001",
        "phone_country_code": "+1",
        "phone_number": "2125550100",
    },
}

EXAMPLES: dict[str, dict[str, Any]] = {
    "erp.invoice.upserted": {
        **_header("0b6f1c1e-6a36-4b8e-9a57-2f1d7c3e9a01", "erp.invoice.upserted", "erp"),
        "payload": INVOICE,
    },
    "erp.invoice.cancelled": {
        **_header("0b6f1c1e-6a36-4b8e-9a57-2f1d7c3e9a02", "erp.invoice.cancelled", "erp"),
        "payload": {"invoice_number": "INV-1001", "version": 4},
    },
    "erp.account.snapshot": {
        **_header("0b6f1c1e-6a36-4b8e-9a57-2f1d7c3e9a03", "erp.account.snapshot", "erp"),
        "payload": {"as_of": "2026-12-01T00:00:00Z", "sequence": 12, "invoices": [INVOICE]},
    },
    "payment.pay_invoice": {
        **_header("5d1e7f00-3c2a-4e6b-8f3d-1a2b3c4d5e01", "payment.pay_invoice", "portal"),
        "payload": {"idempotency_key": "order-7731-pay-1", "invoice_number": "INV-1001", "method": GUEST},
    },
    "payment.pay_selected_invoices": {
        **_header("5d1e7f00-3c2a-4e6b-8f3d-1a2b3c4d5e02", "payment.pay_selected_invoices", "portal"),
        "payload": {
            "idempotency_key": "order-7731-pay-2",
            "invoices": [
                {"invoice_number": "INV-2101", "amount": None},
                {"invoice_number": "INV-2102", "amount": None},
            ],
            "method": {"kind": "remittance", "channel": "wire"},
        },
    },
    "payment.pay_account_balance": {
        **_header("5d1e7f00-3c2a-4e6b-8f3d-1a2b3c4d5e03", "payment.pay_account_balance", "portal"),
        "payload": {
            "idempotency_key": "order-7731-pay-3",
            "currency": "USD",
            "method": {"kind": "payer_portal"},
        },
    },
    "payment.cancel_checkout": {
        **_header("5d1e7f00-3c2a-4e6b-8f3d-1a2b3c4d5e04", "payment.cancel_checkout", "portal"),
        "payload": {
            "idempotency_key": "order-7731-cancel-1",
            "payment_id": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        },
    },
}
