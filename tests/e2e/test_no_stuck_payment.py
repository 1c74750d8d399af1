"""No payment stays stuck, end to end: the three services and the sandbox provider as OS
processes on real Kafka and PostgreSQL.

- The provider completes a payment but its webhooks are lost: status sync asks the
  provider and the invoice reaches `paid` (the time it took is printed).
- A failure's webhook is lost: status sync ends the payment and the invoice is
  `payable` again (time printed).
- A cancelled checkout is cancelled at the provider; money that still arrives is
  refunded, and the read model shows the refund with the balance unchanged.
- The account PAY button follows the policy: hidden with a reason for a seed-003
  account, shown for a seed-000 one.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_walking_skeleton import (
    E2E_MERCHANT,
    guest_checkout_command,
    invoice_status,
    seed_000_invoice,
    until_event,
)

from kafka_tools import eventually, produce
from payments_contracts.payments import CancelCheckout, CancelCheckoutPayload
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from system import System

pytestmark = pytest.mark.e2e

SYNC_AFTER_S = 2
SEED_003_ACCOUNT = "C-003-E2E"


@pytest.fixture
def system_env(tmp_path: Path, run_id: str) -> dict[str, str]:
    merchants = tmp_path / "merchants.yaml"
    merchants.write_text(
        "default: full-payment-portal\n"
        "merchants:\n"
        f"  {E2E_MERCHANT}: {{accounts: [C-{run_id}]}}\n"
        f"  seed-003: {{policy: partial-multi-portal, accounts: [{SEED_003_ACCOUNT}]}}\n"
    )
    return {
        "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": str(SYNC_AFTER_S),
        "PAYMENT_INTAKE_PROVIDER_WORKER_INTERVAL_S": "0.5",
        "PAYMENTS_MERCHANT_CONFIG": str(merchants),
        "PAYMENT_INTAKE_MERCHANT_CONFIG": str(merchants),
        "SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01",
    }


async def until_status(system: System, account: str, number: str, status: str, timeout: float = 45) -> Any:
    return await eventually(
        lambda: invoice_status(system, account, number),
        lambda s: s.get("pay_status") == status,
        timeout=timeout,
        interval=0.1,
        what=f"{number} to be {status}",
    )


async def open_checkout(system: System, topics: TopicRegistry, bootstrap: str, account: str, number: str):
    await produce(bootstrap, topics.erp_invoices.name, [seed_000_invoice(account, number)])
    await until_status(system, account, number, "payable")
    command = guest_checkout_command(account, number, key=f"pay-{uuid.uuid4()}")
    await produce(bootstrap, topics.payments_commands.name, [command])
    opened = await until_event(bootstrap, topics, command, "payment.checkout_opened")
    await until_status(system, account, number, "pending")
    return command, opened.payload, opened.occurred_at


async def drop_webhooks(system: System, drop: bool) -> None:
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        (await provider.put("/sandbox/webhook-options", json={"drop": drop})).raise_for_status()


async def sandbox(system: System, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        response = await provider.post(path, json=body)
        response.raise_for_status()
        return response.json()


async def test_lost_webhooks_are_resolved_by_status_sync(
    system: System, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    account = f"C-{run_id}"
    await drop_webhooks(system, True)
    # The worst case: the webhook is lost right after the checkout opened, so status sync
    # waits the whole threshold before it asks.
    _, paid_checkout, paid_opened = await open_checkout(
        system, topics, kafka_bootstrap, account, f"INV-{run_id}-1"
    )
    await sandbox(system, f"/sandbox/checkouts/{paid_checkout.checkout_id}/complete")
    lost = time.monotonic()
    paid = await until_status(system, account, f"INV-{run_id}-1", "paid")
    to_paid = time.monotonic() - lost
    paid_after_open = (datetime.now(UTC) - paid_opened).total_seconds()
    assert paid["balance"] == {"amount_minor": 0, "currency": "USD"}

    _, failed_checkout, failed_opened = await open_checkout(
        system, topics, kafka_bootstrap, account, f"INV-{run_id}-2"
    )
    await sandbox(
        system, f"/sandbox/checkouts/{failed_checkout.checkout_id}/fail", {"reason": "card_declined"}
    )
    lost = time.monotonic()
    payable = await until_status(system, account, f"INV-{run_id}-2", "payable")
    to_payable = time.monotonic() - lost
    payable_after_open = (datetime.now(UTC) - failed_opened).total_seconds()
    assert payable["pay_button"] is True
    assert payable["last_problem"]["reason_code"] == "payment_failed"

    async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
        never_sent = (await provider.get("/sandbox/webhooks/failed")).json()
    assert {m["state"] for m in never_sent} == {"dropped"} and len(never_sent) == 3
    # Status sync waits for the threshold after the checkout opened, then one worker round.
    assert to_paid < SYNC_AFTER_S + 15 and to_payable < SYNC_AFTER_S + 15
    print(
        f"\nstatus sync (threshold {SYNC_AFTER_S} s): lost success -> paid {to_paid:.2f} s after the loss"
        f" ({paid_after_open:.2f} s after the checkout opened); lost failure -> payable {to_payable:.2f} s"
        f" after the loss ({payable_after_open:.2f} s after the checkout opened)"
    )


async def test_a_cancelled_checkout_paid_anyway_is_refunded_and_shown(
    system: System, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    account, number = f"C-{run_id}", f"INV-{run_id}"
    command, checkout, _ = await open_checkout(system, topics, kafka_bootstrap, account, number)
    cancel = CancelCheckout.originating(
        producer="portal-backend",
        account_id=account,
        payload=CancelCheckoutPayload(idempotency_key=f"cancel-{run_id}", payment_id=checkout.payment_id),
    )
    await produce(kafka_bootstrap, topics.payments_commands.name, [cancel])
    await until_status(system, account, number, "payable")

    async def at_provider() -> str:
        async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
            listed = (
                await provider.get("/sandbox/checkouts", params={"payment_id": str(checkout.payment_id)})
            ).json()
        return str(listed[0]["status"])

    await eventually(at_provider, lambda s: s == "cancelled", timeout=30, what="cancelled at the provider")
    await sandbox(system, f"/sandbox/checkouts/{checkout.checkout_id}/complete", {"late": True})
    shown = await eventually(
        lambda: invoice_status(system, account, number),
        lambda s: (s.get("refund") or {}).get("state") == "refunded",
        timeout=45,
        interval=0.2,
        what="the refund shown on the invoice",
    )
    assert shown["refund"]["reason_code"] == "late_payment"
    assert shown["refund"]["amount"] == {"amount_minor": 125000, "currency": "USD"}
    assert (shown["pay_status"], shown["balance"]["amount_minor"]) == ("payable", 125000)
    refunded = await until_event(kafka_bootstrap, topics, command, "payment.refunded")
    assert refunded.payload.payment_id == checkout.payment_id


async def test_the_account_pay_button_follows_the_policy(
    system: System, kafka_bootstrap: str, topics: TopicRegistry, run_id: str
) -> None:
    full = f"C-{run_id}"
    await produce(
        kafka_bootstrap,
        topics.erp_invoices.name,
        [seed_000_invoice(full, f"INV-{run_id}"), seed_000_invoice(SEED_003_ACCOUNT, f"INV-{run_id}")],
    )

    async def summary(account: str) -> dict[str, Any]:
        merchant = "seed-003" if account == SEED_003_ACCOUNT else E2E_MERCHANT
        headers = {"authorization": f"Bearer {demo_api_key(merchant)}"}
        async with httpx.AsyncClient(base_url=system.url("status-projector"), headers=headers) as client:
            response = await client.get(f"/v1/accounts/{account}/summary")
            return {"http": response.status_code, **(response.json() if response.status_code == 200 else {})}

    hidden = await eventually(
        lambda: summary(SEED_003_ACCOUNT),
        lambda s: s.get("pay_button_reason") == "account_balance_not_allowed",
        timeout=45,
        interval=0.2,
        what="the seed-003 account's PAY button hidden by policy",
    )
    assert hidden["pay_button"] is False and hidden["balances"][0]["balance"]["amount_minor"] == 125000
    shown = await eventually(
        lambda: summary(full),
        lambda s: s.get("pay_button") is True,
        timeout=45,
        what="the seed-000 PAY button",
    )
    assert shown["pay_button_reason"] is None
