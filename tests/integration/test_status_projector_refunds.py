"""Refunds and the account-level PAY button, as payment-intake announces them: the read
model shows a refund on the invoice without touching its balance, hides the account
PAY button where the policy does not allow paying the balance, and a rebuild ends with
the same rows."""

from __future__ import annotations

import uuid

import pytest
from status_projector_support import (
    PRODUCER,
    Clock,
    checkout_opened,
    dump,
    failed,
    portal_client,
    project_to_end,
    projector_pool,
    publish,
    registered,
    requested,
    succeeded,
    synced,
    usd,
)

from payments_contracts.payments import (
    AccountBalancePaymentChanged,
    AccountBalancePaymentChangedPayload,
    PaymentRefunded,
    PaymentRefundRequested,
    RefundedPayload,
    RefundRequestedPayload,
)
from payments_contracts.topics import TopicRegistry
from status_projector import ops
from status_projector.adapters.schema import VersionTables
from status_projector.entrypoints.http import AccountSummary, InvoiceOut

pytestmark = pytest.mark.integration


def refund_requested(clock: Clock, account: str, payment_id: uuid.UUID, refund_id: uuid.UUID, reason: str):
    return PaymentRefundRequested.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=RefundRequestedPayload(
            payment_id=payment_id,
            refund_id=refund_id,
            amount=usd(10_000),
            invoice_numbers=["INV-1"],
            reason_code=reason,  # type: ignore[arg-type]
            message="being refunded",
            requested_by="policy",
        ),
    )


def refunded(clock: Clock, account: str, payment_id: uuid.UUID, refund_id: uuid.UUID):
    return PaymentRefunded.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=RefundedPayload(
            payment_id=payment_id, refund_id=refund_id, amount=usd(10_000), invoice_numbers=["INV-1"]
        ),
    )


def balance_payment(clock: Clock, account: str, allowed: bool):
    return AccountBalancePaymentChanged.originating(
        producer=PRODUCER,
        account_id=account,
        occurred_at=clock.tick(),
        payload=AccountBalancePaymentChangedPayload(
            allowed=allowed,
            reason_code=None if allowed else "account_balance_not_allowed",
            message=None if allowed else "Paying the whole account balance is not available.",
        ),
    )


async def accounts(pool, version: int) -> list[dict]:
    rows = await pool.fetch(f"SELECT * FROM {VersionTables(version).accounts} ORDER BY account_id")
    return [dict(r) for r in rows]


async def test_a_refund_shows_on_the_invoice_and_the_balance_stays_right(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock = Clock()
    pool = await projector_pool(database_url)
    client = portal_client(pool, topics, ["A1", "A2", "A3"])

    async def invoice(account: str) -> InvoiceOut:
        response = await client.get(f"/v1/accounts/{account}/invoices/INV-1")
        assert response.status_code == 200, response.text
        return InvoiceOut.model_validate(response.json())

    async def summary(account: str) -> AccountSummary:
        response = await client.get(f"/v1/accounts/{account}/summary")
        assert response.status_code == 200, response.text
        return AccountSummary.model_validate(response.json())

    try:
        late, paid, late_refund = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        double, double_refund = uuid.uuid4(), uuid.uuid4()
        await publish(
            kafka_bootstrap,
            topics,
            [
                synced(clock, "A1", "INV-1"),
                registered(clock, "A1", "INV-1"),
                synced(clock, "A2", "INV-1"),
                registered(clock, "A2", "INV-1"),
                balance_payment(clock, "A1", True),
                balance_payment(clock, "A2", False),
                # A1: a checkout that failed (its money came late) is refunded.
                requested(clock, "A1", late, [("INV-1", 10_000)]),
                checkout_opened(clock, "A1", late),
                failed(clock, "A1", late),
                refund_requested(clock, "A1", late, late_refund, "late_payment"),
                # A2: paid, then an older checkout's money arrives too: a double payment.
                requested(clock, "A2", double, [("INV-1", 10_000)]),
                failed(clock, "A2", double),
                requested(clock, "A2", paid, [("INV-1", 10_000)]),
                succeeded(clock, "A2", paid, [("INV-1", 10_000)]),
                refund_requested(clock, "A2", double, double_refund, "double_payment"),
            ],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        asked = await invoice("A1")
        assert asked.refund is not None
        assert (asked.refund.state, asked.refund.reason_code) == ("requested", "late_payment")
        assert (asked.pay_status, asked.balance.amount_minor) == ("payable", 10_000)

        await publish(
            kafka_bootstrap,
            topics,
            [refunded(clock, "A1", late, late_refund), refunded(clock, "A2", double, double_refund)],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        back = await invoice("A1")
        assert back.refund is not None
        assert (back.refund.state, back.refund.reason_code, back.refund.amount.amount_minor) == (
            "refunded",
            "late_payment",
            10_000,
        )
        assert (back.pay_status, back.balance.amount_minor, back.pay_button) == ("payable", 10_000, True)
        twice = await invoice("A2")
        assert twice.refund is not None and twice.refund.payment_id == str(double)
        assert (twice.refund.state, twice.refund.reason_code) == ("refunded", "double_payment")
        assert (twice.pay_status, twice.balance.amount_minor) == ("paid", 0)  # paid once, not twice

        allowed = await summary("A1")
        assert (allowed.pay_button, allowed.pay_button_reason) == (True, None)
        refused = await summary("A2")
        assert refused.pay_button is False
        assert refused.pay_button_reason == "account_balance_not_allowed"
        assert refused.pay_button_message is not None
        await publish(
            kafka_bootstrap, topics, [synced(clock, "A2", "INV-2"), registered(clock, "A2", "INV-2")]
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        still = await summary("A2")  # a balance to pay, but the policy says no
        assert still.balances[0].balance.amount_minor == 10_000
        assert (still.pay_button, still.pay_button_reason) == (False, "account_balance_not_allowed")

        live, live_accounts = await dump(pool, 1), await accounts(pool, 1)
        ctx = ops.Projecting(pool, topics, kafka_bootstrap, batch_size=3)
        result = await ops.rebuild(ctx, activate_when_done=False)
        assert await dump(pool, result.version) == live
        assert await accounts(pool, result.version) == live_accounts
    finally:
        await client.aclose()
        await pool.close()
