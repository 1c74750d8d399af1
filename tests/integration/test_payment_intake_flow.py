"""payment-intake end to end inside one process: real Kafka, PostgreSQL and the sandbox."""

from __future__ import annotations

import pytest
from message_builders import pay_invoice
from payment_intake_support import running_intake

pytestmark = pytest.mark.integration


async def test_a_paid_invoice_goes_requested_checkout_opened_succeeded(kafka_bootstrap, database_url, topics):
    async with running_intake(
        kafka_bootstrap=kafka_bootstrap, database_url=database_url, topics=topics
    ) as intake:
        await intake.invoice("A1", "INV-1", 125_000)
        command = pay_invoice("A1", "INV-1")
        await intake.send(command)
        answer = await intake.answer(command)
        assert answer.type == "payment.requested", answer.payload
        payment_id = answer.payload.payment_id
        opened = await intake.event(payment_id, "payment.checkout_opened")
        await intake.sandbox("POST", f"/sandbox/checkouts/{opened.payload.checkout_id}/complete")
        succeeded = await intake.event(payment_id, "payment.succeeded")
        assert succeeded.payload.amount.amount_minor == 125_000
        assert [a.invoice_number for a in succeeded.payload.allocations] == ["INV-1"]
