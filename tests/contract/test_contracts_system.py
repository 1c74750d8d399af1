"""The system driven only through contracts/: a new ERP team and a new portal team.

The services run as OS processes on real Kafka and PostgreSQL. Every message this test
sends is built from its JSON Schema's example and validated before it is sent; every
message on every project topic afterwards is validated against the JSON Schema of its
type (the one deliberately bad ERP document aside, which must come back as a dead
letter whose headers match the AsyncAPI document); every HTTP answer (read API,
webhook endpoint, sandbox controls) must be a documented status matching its OpenAPI
schema.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from contract.documents import (
    build,
    checked,
    dead_letter_problems,
    message_problems,
    topic_of_type,
)
from kafka_tools import eventually, produce, read_all
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import DEFAULT_SECRET, System, free_port

pytestmark = pytest.mark.timeout(300)
NOT_YET = {"unknown_account", "invoice_not_found", "invoice_not_registered", "account_without_merchant"}

PORTAL_000 = "contract-000"
PORTAL_003 = "contract-003"
REMITTANCE = {
    "check": {
        "payee": "Northwind Labs Inc.",
        "mailing_address": {
            "name": "Northwind Labs Inc., Accounts Receivable",
            "line1": "PO Box 7701",
            "city": "Chicago",
            "region": "IL",
            "postal_code": "60680",
            "country": "US",
        },
    },
    "wire": {
        "bank_name": "First Demo Bank",
        "account_name": "Northwind Labs Inc.",
        "account_number": "000123456789",
        "routing_number": "021000021",
        "swift_bic": "FDBKUS33",
    },
}


@pytest.fixture
def accounts() -> dict[str, str]:
    run = uuid.uuid4().hex[:6].upper()
    return {"000": f"K0-{run}", "003": f"K3-{run}", "late": f"K9-{run}", "nobody": f"KX-{run}"}


@pytest.fixture
def merchant_file(tmp_path: Path, accounts: dict[str, str]) -> Path:
    # No `default`: an account listed under no merchant cannot pay.
    path = tmp_path / "merchants.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "merchants": {
                    PORTAL_000: {"policy": "full-payment-portal", "accounts": [accounts["000"]]},
                    PORTAL_003: {
                        "policy": "partial-multi-portal",
                        "accounts": [accounts["003"]],
                        "remittance": REMITTANCE,
                    },
                }
            }
        )
    )
    return path


@pytest.fixture
def system(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry, tmp_path: Path, merchant_file: Path
) -> Iterator[System]:
    running = System(
        kafka_bootstrap=kafka_bootstrap,
        database_url=database_url,
        log_dir=tmp_path / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=topics.prefix,
        ports={},
        extra_env={"SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01"},
        merchant_config=merchant_file,
    )
    running.ports = {name: free_port() for name in running.ports}
    running.start()
    try:
        yield running
    finally:
        codes = running.stop()
        assert all(code == 0 for code in codes.values()), codes


def _signed(body: bytes, *, secret: str = DEFAULT_SECRET, at: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers, as the OpenAPI document of payment-intake describes them."""
    webhook_id = f"msg_{uuid.uuid4().hex}"
    stamp = str(at if at is not None else int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json",
    }


class Portal:
    """A portal backend: commands out, answers in, the read API; only contracts/ in hand."""

    def __init__(self, system: System, topics: TopicRegistry, bootstrap: str, merchant: str) -> None:
        self.system, self.topics, self.bootstrap = system, topics, bootstrap
        self.http = httpx.AsyncClient(
            base_url=system.url("status-projector"),
            headers={"authorization": f"Bearer {demo_api_key(merchant)}"},
        )

    async def send(self, message: dict[str, Any]) -> None:
        topic = self.topics.prefix + topic_of_type()[message["type"]]
        await produce(self.bootstrap, topic, [(message["account_id"].encode(), json.dumps(message).encode())])

    async def events(self) -> list[dict[str, Any]]:
        records = await read_all(self.bootstrap, self.topics.payments_events.name)
        return [json.loads(r.value) for r in records]

    async def answer(self, command: dict[str, Any]) -> dict[str, Any]:
        """The one answer: the first payment.requested/rejected/remittance_instructions (or
        cancelled) whose causation_id is the command's event_id (the AsyncAPI rules)."""
        answers = (
            "payment.requested",
            "payment.rejected",
            "payment.remittance_instructions",
            "payment.cancelled",
        )

        async def found() -> list[dict[str, Any]]:
            return [
                e
                for e in await self.events()
                if e["causation_id"] == command["event_id"] and e["type"] in answers
            ]

        return (await eventually(found, bool, timeout=45, interval=0.3, what=f"answer to {command['type']}"))[
            0
        ]

    async def answered(self, make: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send a fresh command until payment-intake knows the invoice: the read model and
        payment-intake consume `invoices` independently, so "payable" on the read API can
        come a moment before payment-intake has the invoice (or the merchant file's change)."""
        deadline = time.monotonic() + 45
        while True:
            command = make()
            await self.send(command)
            answer = await self.answer(command)
            not_yet = answer["type"] == "payment.rejected" and answer["payload"]["reason_code"] in NOT_YET
            if not not_yet or time.monotonic() > deadline:
                return command, answer
            await asyncio.sleep(0.5)

    async def next_of(self, payment_id: str, kind: str) -> dict[str, Any]:
        async def found() -> list[dict[str, Any]]:
            return [
                e
                for e in await self.events()
                if e["type"] == kind and e["payload"].get("payment_id") == payment_id
            ]

        return (await eventually(found, bool, timeout=45, interval=0.3, what=kind))[0]

    async def invoice(self, account: str, number: str) -> httpx.Response:
        response = await self.http.get(f"/v1/accounts/{account}/invoices/{number}")
        return checked(
            "status-projector", "/v1/accounts/{account_id}/invoices/{invoice_number}", "GET", response
        )


async def test_an_erp_and_a_portal_integrate_through_the_contracts_alone(
    system: System,
    topics: TopicRegistry,
    kafka_bootstrap: str,
    accounts: dict[str, str],
    merchant_file: Path,
) -> None:
    erp_topic = topics.erp_invoices.name
    a000, a003 = accounts["000"], accounts["003"]
    portal = Portal(system, topics, kafka_bootstrap, PORTAL_000)
    portal_003 = Portal(system, topics, kafka_bootstrap, PORTAL_003)
    provider = httpx.AsyncClient(base_url=system.url("sandbox-provider"))
    webhooks = httpx.AsyncClient(base_url=system.url("payment-intake"))

    # --- the ERP team: documents built from the schema's example -----------------------
    documents = [
        build(
            "erp.invoice.upserted",
            account_id=a000,
            invoice_number="INV-1",
            total="1250.00",
            open_amount="1250.00",
        ),
        build(
            "erp.invoice.upserted",
            from_doc=True,
            account_id=a003,
            invoice_number="INV-7",
            total="980.00",
            open_amount="980.00",
        ),
        build("erp.invoice.upserted", account_id=accounts["nobody"], invoice_number="INV-X"),
    ]
    for document in documents:
        await portal.send(document)
    # A JSON number as an amount is refused with a clear reason, as a dead letter.
    bad = build("erp.invoice.upserted", account_id=a000, invoice_number="INV-F")
    bad["payload"]["total"] = 1250.0
    assert message_problems(json.dumps(bad).encode()), "the schema must refuse a JSON number"
    await produce(kafka_bootstrap, erp_topic, [(a000.encode(), json.dumps(bad).encode())])

    async def registered() -> int:
        return (await portal.invoice(a000, "INV-1")).status_code

    await eventually(registered, lambda s: s == 200, timeout=60, interval=0.3, what="INV-1 in the read model")

    async def payable() -> str:
        return (await portal.invoice(a000, "INV-1")).json()["pay_status"]

    await eventually(payable, lambda s: s == "payable", timeout=60, interval=0.3, what="INV-1 payable")

    # --- the portal team: pay, complete at the provider, read it paid --------------------
    pay, requested = await portal.answered(
        lambda: build(
            "payment.pay_invoice", account_id=a000, invoice_number="INV-1", idempotency_key=str(uuid.uuid4())
        )
    )
    assert requested["type"] == "payment.requested", requested
    assert requested["correlation_id"] == pay["correlation_id"]
    payment_id = requested["payload"]["payment_id"]
    opened = await portal.next_of(payment_id, "payment.checkout_opened")
    assert opened["causation_id"] == pay["event_id"]  # the next step, not a second answer
    checkout_id = opened["payload"]["checkout_id"]
    done = await provider.post(f"/sandbox/checkouts/{checkout_id}/complete", json={})
    checked("sandbox-provider", "/sandbox/checkouts/{checkout_id}/complete", "POST", done)
    succeeded = await portal.next_of(payment_id, "payment.succeeded")
    assert succeeded["correlation_id"] == pay["correlation_id"]

    async def paid() -> str:
        return (await portal.invoice(a000, "INV-1")).json()["pay_status"]

    await eventually(paid, lambda s: s == "paid", timeout=60, interval=0.3, what="INV-1 paid")
    # The ERP posts it with our payment_id as the reference: the balance is not counted twice.
    posted = build(
        "erp.invoice.upserted",
        account_id=a000,
        invoice_number="INV-1",
        version=4,
        open_amount="0.00",
        posted_payments=[{"reference": payment_id, "amount": "1250.00", "posted_at": None}],
    )
    await portal.send(posted)
    summary = checked(
        "status-projector",
        "/v1/accounts/{account_id}/summary",
        "GET",
        await portal.http.get(f"/v1/accounts/{a000}/summary"),
    )
    assert summary.status_code == 200

    # --- remittance: an answer of its own, and readable without a command ----------------
    def wire() -> dict[str, Any]:  # the integration guide's own example, sent
        return build(
            "payment.pay_selected_invoices",
            from_doc=True,
            account_id=a003,
            idempotency_key=str(uuid.uuid4()),
            invoices=[{"invoice_number": "INV-7", "amount": None}],
        )

    await eventually(
        lambda: portal_003.invoice(a003, "INV-7"),
        lambda r: r.status_code == 200 and r.json()["pay_status"] == "payable",
        timeout=60,
        interval=0.3,
        what="INV-7 payable",
    )
    _, instructions = await portal_003.answered(wire)
    assert instructions["type"] == "payment.remittance_instructions", instructions
    assert instructions["payload"]["details"]["wire"]["swift_bic"] == "FDBKUS33"
    assert (
        "INV-7" in instructions["payload"]["reference"] and "FDBKUS33" in instructions["payload"]["message"]
    )
    read = await portal_003.http.get(f"/v1/accounts/{a003}/remittance")
    checked("status-projector", "/v1/accounts/{account_id}/remittance", "GET", read)
    assert read.status_code == 200 and read.json()["details"] == instructions["payload"]["details"]
    other = await portal.http.get(f"/v1/accounts/{a003}/remittance")  # another merchant's key
    assert (
        checked("status-projector", "/v1/accounts/{account_id}/remittance", "GET", other).status_code == 404
    )

    # --- an account no merchant lists: refused with a reason, not a silent default -------
    stray = build(
        "payment.pay_invoice", account_id=accounts["nobody"], invoice_number="INV-X", idempotency_key="k"
    )
    await portal.send(stray)
    refused = await portal.answer(stray)
    assert refused["payload"]["reason_code"] == "account_without_merchant", refused

    # --- an account added to a merchant while everything runs: no restart ----------------
    late = accounts["late"]
    await portal.send(build("erp.invoice.upserted", account_id=late, invoice_number="INV-L"))
    config = yaml.safe_load(merchant_file.read_text())
    config["merchants"][PORTAL_000]["accounts"].append(late)
    merchant_file.write_text(yaml.safe_dump(config))
    await eventually(
        lambda: portal.invoice(late, "INV-L"),
        lambda r: r.status_code == 200 and r.json()["pay_status"] == "payable",
        timeout=60,
        interval=0.3,
        what="INV-L readable with the merchant's key and payable",
    )
    _, joined_answer = await portal.answered(
        lambda: build(
            "payment.pay_invoice", account_id=late, invoice_number="INV-L", idempotency_key=str(uuid.uuid4())
        )
    )
    assert joined_answer["type"] == "payment.requested", joined_answer

    # --- the webhook endpoint, as a provider sees it -------------------------------------
    path = "/callbacks/provider"
    body = json.dumps(
        {
            "type": "payment.succeeded",
            "timestamp": "2026-12-01T09:30:00+00:00",
            "data": {"payment_id": payment_id, "checkout_id": checkout_id, "account_id": accounts["late"]},
        }
    ).encode()
    answers = {
        "bad signature": await webhooks.post(
            path, content=body, headers=_signed(body, secret="whsec_" + base64.b64encode(b"x" * 24).decode())
        ),
        "old timestamp": await webhooks.post(
            path, content=body, headers=_signed(body, at=int(time.time()) - 3600)
        ),
        "another account": await webhooks.post(path, content=body, headers=_signed(body)),
        "too large": await webhooks.post(path, content=b"{" + b" " * 70_000 + b"}", headers=_signed(b"{}")),
        "not handled": await webhooks.post(
            path,
            content=(
                ignored := json.dumps(
                    {
                        "type": "payout.paid",
                        "timestamp": "2026-12-01T09:30:00+00:00",
                        "data": {"payment_id": payment_id, "checkout_id": "c", "account_id": a000},
                    }
                ).encode()
            ),
            headers=_signed(ignored),
        ),
    }
    for response in answers.values():
        checked("payment-intake", path, "POST", response)
    assert {k: r.status_code for k, r in answers.items()} == {
        "bad signature": 401,
        "old timestamp": 400,
        "another account": 409,
        "too large": 413,
        "not handled": 200,
    }

    # --- every message on every project topic matches the contract ------------------------
    async def settled() -> list[Any]:
        return await read_all(kafka_bootstrap, topics.erp_invoices.dead_letter)

    dead = await eventually(settled, bool, timeout=30, interval=0.5, what="the dead letter")
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert not dead_letter_problems("invoice-sync", headers), headers
    assert "decimal string" in headers["dlq.error"], headers["dlq.error"]
    assert json.loads(dead[0].value)["event_id"] == bad["event_id"]  # nothing lost: all of it kept
    seen: dict[str, int] = {}
    for topic in topics.all:
        for record in await read_all(kafka_bootstrap, topic.name):
            if json.loads(record.value).get("event_id") == bad["event_id"]:
                continue
            problems = message_problems(record.value)
            assert not problems, f"{topic.name} offset {record.offset}: {problems}\n{record.value[:600]!r}"
            kind = json.loads(record.value)["type"]
            seen[kind] = seen.get(kind, 0) + 1
    for kind in (
        "erp.invoice.upserted",
        "invoice.synced",
        "invoice.registered",
        "payment.pay_invoice",
        "payment.requested",
        "payment.checkout_opened",
        "provider.callback_received",
        "payment.succeeded",
        "payment.remittance_instructions",
        "payment.rejected",
    ):
        assert seen.get(kind), f"no {kind} was validated: {seen}"
    for client in (portal.http, portal_003.http, provider, webhooks):
        await client.aclose()
