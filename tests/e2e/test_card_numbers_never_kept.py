"""Card numbers planted through every input never end up anywhere we keep or say things.

The whole system runs as OS processes on real Kafka and PostgreSQL. Luhn-valid numbers,
written in every common way (plain, spaces, dashes, dots, double spaces, mixed, inside
text), go into every free-text field of ERP documents (`erp.invoices`), of pay and cancel
commands (`payments.commands`), of provider callbacks (the webhook endpoint, signed and
forged) and into read-API requests. Then `pg_dump` of the database, every topic our
services write (dead-letter topics included; not the two input topics, whose records are
the ERP's and the portals' as they sent them) and every service's log are searched: zero
occurrences.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from erp_invoices import erp_document
from kafka_tools import eventually, produce, read_all
from payments_contracts import Envelope
from payments_contracts.erp import (
    ErpAccountSnapshot,
    ErpAccountSnapshotPayload,
    ErpInvoiceCancelled,
    ErpInvoiceCancelledPayload,
    ErpInvoiceDocument,
    ErpInvoiceUpserted,
    ErpPostedPayment,
)
from payments_contracts.payments import (
    BillingAddress,
    CancelCheckout,
    CancelCheckoutPayload,
    GuestCheckout,
    PayAccountBalance,
    PayAccountBalancePayload,
    PayerPortal,
    PayInvoice,
    PayInvoicePayload,
    PaySelectedInvoices,
    PaySelectedInvoicesPayload,
    SelectedInvoice,
)
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET, demo_api_key
from system import System

pytestmark = pytest.mark.e2e

# Test card numbers of the major schemes (13 to 19 digits), all Luhn-valid.
PANS = [
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "6011000990139424",
    "3530111333300000",
    "4222222222222",
    "6304000000000000018",
]
STYLES: list[Callable[[str], str]] = [
    lambda d: d,
    lambda d: " ".join(d[i : i + 4] for i in range(0, len(d), 4)),
    lambda d: "-".join(d[i : i + 4] for i in range(0, len(d), 4)),
    lambda d: ".".join(d[i : i + 4] for i in range(0, len(d), 4)),
    lambda d: "  ".join(d[i : i + 4] for i in range(0, len(d), 4)),
    lambda d: f"{d[:4]} - {d[4:8]}.{d[8:12]}  {d[12:]}",
    lambda d: f"card {' '.join(d[i : i + 4] for i in range(0, len(d), 4))} thanks",
]


class Planter:
    """Hands out a card number in a new writing for each field, and remembers them."""

    def __init__(self) -> None:
        self.planted: list[tuple[str, str, str]] = []  # (where, digits, as written)

    def __call__(self, where: str) -> str:
        n = len(self.planted)
        digits = PANS[n % len(PANS)]
        written = STYLES[n % len(STYLES)](digits)
        self.planted.append((where, digits, written))
        return written


def _document(number: str, **changes: Any) -> ErpInvoiceDocument:
    fields: dict[str, Any] = {
        "order_number": "SO-1",
        "po_number": "PO-1",
        "invoice_date": date(2026, 10, 1),
        "due_date": date(2026, 10, 31),
        **changes,
    }
    return erp_document(number, **fields)


def erp_documents(account: str, plant: Planter) -> list[Envelope]:
    def upsert(doc: ErpInvoiceDocument, *, account_id: str = account, producer: str = "erp") -> Envelope:
        return ErpInvoiceUpserted.originating(producer=producer, account_id=account_id, payload=doc)

    return [
        upsert(_document("INV-A", order_number=plant("erp order_number"))),
        upsert(_document("INV-B", po_number=plant("erp po_number"))),
        upsert(_document(plant("erp invoice_number"))),
        upsert(
            _document(
                "INV-C",
                posted_payments=[
                    ErpPostedPayment(reference=plant("erp posted reference"), amount=Decimal(1))
                ],
            )
        ),
        upsert(_document("INV-D"), account_id=plant("erp account_id (the message key)")),
        upsert(_document("INV-E"), producer=plant("erp envelope producer")),
        ErpInvoiceCancelled.originating(
            producer="erp",
            account_id=account,
            payload=ErpInvoiceCancelledPayload(
                invoice_number=plant("erp cancelled invoice_number"), version=2
            ),
        ),
        ErpAccountSnapshot.originating(
            producer="erp",
            account_id=account,
            payload=ErpAccountSnapshotPayload(
                as_of=datetime.now(UTC),
                sequence=1,
                invoices=[_document("INV-F", po_number=plant("erp snapshot po_number"))],
            ),
        ),
    ]


def _billing(**changes: str) -> BillingAddress:
    fields = {
        "email": "ap@example.com",
        "street": "1 Main Street",
        "address_line2": "Suite 4",
        "country": "US",
        "postal_code": "02139",
        "phone_country_code": "+1",
        "phone_number": "6175550100",
        **changes,
    }
    return BillingAddress(**fields)


def commands(account: str, invoice: str, plant: Planter) -> tuple[list[Envelope], list[Envelope]]:
    """(commands answered with a rejection, commands that can only be dead-lettered)."""

    def pay(
        *,
        key: str | None = None,
        number: str = invoice,
        billing: BillingAddress | None = None,
        name: str = "Pat Buyer",
        account_id: str = account,
        producer: str = "portal",
    ) -> PayInvoice:
        return PayInvoice.originating(
            producer=producer,
            account_id=account_id,
            payload=PayInvoicePayload(
                idempotency_key=key or str(uuid.uuid4()),
                invoice_number=number,
                method=GuestCheckout(billing_address=billing or _billing(), name_on_card=name),
            ),
        )

    answered: list[Envelope] = [
        pay(key=plant("command idempotency_key")),
        pay(number=plant("command invoice_number")),
        *(
            pay(billing=_billing(**{name: plant(f"command billing {name}")}))
            for name in (
                "email",
                "street",
                "address_line2",
                "postal_code",
                "phone_country_code",
                "phone_number",
            )
        ),
        pay(name=plant("command name_on_card")),
        PaySelectedInvoices.originating(
            producer="portal",
            account_id=account,
            payload=PaySelectedInvoicesPayload(
                idempotency_key=str(uuid.uuid4()),
                invoices=[
                    SelectedInvoice(invoice_number=invoice),
                    SelectedInvoice(invoice_number=plant("selected")),
                ],
                method=PayerPortal(),
            ),
        ),
        PayAccountBalance.originating(
            producer="portal",
            account_id=account,
            payload=PayAccountBalancePayload(
                idempotency_key=plant("balance idempotency_key"), method=PayerPortal()
            ),
        ),
        PayAccountBalance.originating(
            producer="portal",
            account_id=account,
            payload=PayAccountBalancePayload(
                idempotency_key=str(uuid.uuid4()), currency=plant("balance currency"), method=PayerPortal()
            ),
        ),
        CancelCheckout.originating(
            producer="portal",
            account_id=account,
            payload=CancelCheckoutPayload(
                idempotency_key=plant("cancel idempotency_key"), payment_id=uuid.uuid4()
            ),
        ),
    ]
    dead: list[Envelope] = [
        pay(account_id=plant("command account_id (the message key)")),
        pay(producer=plant("command envelope producer")),
    ]
    return answered, dead


def signed(body: str, webhook_id: str, secret: str = SANDBOX_WEBHOOK_SECRET) -> dict[str, str]:
    at = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def callback(account: str, **data: str) -> str:
    fields = {"checkout_id": "cs_1", "payment_id": str(uuid.uuid4()), "account_id": account, **data}
    return json.dumps({"type": "payment.failed", "timestamp": datetime.now(UTC).isoformat(), "data": fields})


async def plant_callbacks(system: System, account: str, plant: Planter) -> list[int]:
    wrong = "whsec_" + "bm90LXRoZS1wcm92aWRlcnMtc2VjcmV0LWF0LWFsbA=="
    requests = [
        (callback(account, reason=plant("callback reason")), "msg_1", SANDBOX_WEBHOOK_SECRET),
        (callback(account, provider_payment_ref=plant("callback provider_payment_ref")), "msg_2", None),
        (callback(account, checkout_id=plant("callback checkout_id")), "msg_3", None),
        (callback(plant("callback account_id")), "msg_4", None),
        (callback(account), f"msg_{plant('callback webhook-id header')}", None),
        (
            callback(account, reason=plant("forged callback reason")),
            f"msg_{plant('forged webhook-id')}",
            wrong,
        ),
    ]
    statuses = []
    async with httpx.AsyncClient(base_url=system.url("payment-intake")) as client:
        for body, webhook_id, secret in requests:
            headers = signed(body, webhook_id, secret or SANDBOX_WEBHOOK_SECRET)
            statuses.append(
                (await client.post("/callbacks/provider", content=body, headers=headers)).status_code
            )
    return statuses


async def plant_reads(system: System, account: str, plant: Planter) -> list[int]:
    portal = {"authorization": f"Bearer {demo_api_key('e2e-merchant')}"}
    async with httpx.AsyncClient(base_url=system.url("status-projector")) as client:
        return [
            (
                await client.get(f"/v1/accounts/{plant('read account_id')}/summary", headers=portal)
            ).status_code,
            (
                await client.get(
                    f"/v1/accounts/{account}/invoices/{plant('read invoice_number')}", headers=portal
                )
            ).status_code,
            (
                await client.get(
                    f"/v1/accounts/{account}/invoices",
                    params={"cursor": plant("read cursor")},
                    headers=portal,
                )
            ).status_code,
            (
                await client.get(
                    f"/v1/accounts/{account}/summary",
                    headers={"authorization": f"Bearer {plant('read api key')}"},
                )
            ).status_code,
        ]


# --- where we look ----------------------------------------------------------------------------

_SEPARATORS = re.compile(r"(\\[tn]|\\u00a0|[\s.\-\u00a0])")


def occurrences(text: str, planted: list[tuple[str, str, str]]) -> list[str]:
    """Planted numbers found in `text`: as written, or as their digits once separators
    (also JSON-escaped ones) are taken out."""
    squeezed = _SEPARATORS.sub("", text)
    return sorted({where for where, digits, written in planted if written in text or digits in squeezed})


async def everything_kept(
    system: System, database_url: str, kafka_bootstrap: str, topics: TopicRegistry
) -> dict[str, str]:
    dump = subprocess.run(
        ["pg_dump", "--no-owner", database_url], capture_output=True, check=True, timeout=120
    )
    kept = {"pg_dump": dump.stdout.decode(errors="replace")}
    # Every topic we write: all but the two the ERP and the portals write (their records
    # are theirs, as sent), dead-letter topics included.
    inputs = {topics.erp_invoices.name, topics.payments_commands.name}
    for name in sorted(set(topics.desired()) - inputs):
        records = await read_all(kafka_bootstrap, name)
        kept[f"topic {name}"] = "\n".join(
            (r.key or b"").decode(errors="replace")
            + " "
            + (r.value or b"").decode(errors="replace")
            + " "
            + " ".join(f"{k}={v.decode(errors='replace')}" for k, v in (r.headers or ()))
            for r in records
        )
    for log in sorted(system.log_dir.glob("*.log")):
        kept[f"log {log.name}"] = log.read_text(errors="replace")
    return kept


async def test_card_numbers_planted_in_every_input_are_found_nowhere(
    system: System, kafka_bootstrap: str, database_url: str, topics: TopicRegistry, run_id: str
) -> None:
    account, invoice = f"C-{run_id}", f"INV-{run_id}"
    plant = Planter()
    control = ErpInvoiceUpserted.originating(producer="erp", account_id=account, payload=_document(invoice))
    await produce(kafka_bootstrap, topics.erp_invoices.name, [control, *erp_documents(account, plant)])
    erp_planted = len(plant.planted)
    answered, dead = commands(account, invoice, plant)
    await produce(kafka_bootstrap, topics.payments_commands.name, [*answered, *dead])
    callback_statuses = await plant_callbacks(system, account, plant)
    read_statuses = await plant_reads(system, account, plant)

    # Everything planted arrived and was refused: documents dead-lettered, commands
    # rejected or dead-lettered, callbacks refused, reads not served.
    async def dead_letters(topic: str) -> int:
        return len(await read_all(kafka_bootstrap, topic))

    await eventually(
        lambda: dead_letters(topics.erp_invoices.dead_letter),
        lambda n: n == erp_planted,
        timeout=60,
        what="ERP dead letters",
    )
    await eventually(
        lambda: dead_letters(topics.payments_commands.dead_letter),
        lambda n: n == len(dead),
        timeout=60,
        what="command dead letters",
    )
    ids = {str(c.event_id) for c in answered}

    async def rejections() -> list[str]:
        events = [json.loads(r.value) for r in await read_all(kafka_bootstrap, topics.payments_events.name)]
        return [e["payload"].get("reason_code") for e in events if e["correlation_id"] in ids]

    reasons = await eventually(rejections, lambda rs: len(rs) == len(answered), timeout=60, what="rejections")
    assert set(reasons) == {"card_number_in_input"}
    assert callback_statuses == [422, 422, 422, 422, 422, 401]
    assert read_statuses[:3] == [404, 404, 422] and read_statuses[3] == 401
    await asyncio.sleep(1.0)  # let the last log lines and outbox rows land

    kept = await everything_kept(system, database_url, kafka_bootstrap, topics)
    assert (
        invoice in kept["pg_dump"] and f"topic {topics.erp_invoices.dead_letter}" in kept
    )  # we look at real data
    found = {place: occurrences(text, plant.planted) for place, text in kept.items()}
    found = {place: where for place, where in found.items() if where}
    print(
        f"\ncard numbers planted {len(plant.planted)} (in {len({w for w, *_ in plant.planted})} fields, "
        f"{len(STYLES)} writings) through erp.invoices, payments.commands, the webhook endpoint and the read "
        f"API; searched pg_dump, {sum(p.startswith('topic') for p in kept)} topics and "
        f"{sum(p.startswith('log') for p in kept)} service logs; found {sum(len(w) for w in found.values())}"
    )
    assert not found, found
