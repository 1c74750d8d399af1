"""Restrictions come from the policy owner (payment-intake) as events: the projector
shows them, lifts them, parks them until their invoice appears, and a rebuild ends
with the same rows."""

from __future__ import annotations

import pytest
from status_projector_support import (
    Clock,
    dump,
    invoice_row,
    portal_client,
    project_to_end,
    projector_pool,
    publish,
    registered,
    restriction_changed,
    synced,
)

from payments_contracts.topics import TopicRegistry
from status_projector import ops
from status_projector.entrypoints.http import InvoiceOut

pytestmark = pytest.mark.integration


async def test_restriction_before_its_invoice_parks_then_shows_and_lifts(
    kafka_bootstrap: str, database_url: str, topics: TopicRegistry
) -> None:
    clock = Clock()
    pool = await projector_pool(database_url)
    client = portal_client(pool, topics, ["A1"])

    async def invoice(number: str) -> InvoiceOut:
        response = await client.get(f"/v1/accounts/A1/invoices/{number}")
        assert response.status_code == 200, response.text
        return InvoiceOut.model_validate(response.json())

    try:
        # payments.events is ahead of invoices: the restriction names an invoice not seen yet.
        await publish(kafka_bootstrap, topics, [restriction_changed(clock, "A1", "INV-1", restricted=True)])
        await project_to_end(pool, topics, kafka_bootstrap)
        assert [p["waits_for"] for p in (await dump(pool, 1))["parked"]] == ["invoice:A1/INV-1"]

        await publish(
            kafka_bootstrap,
            topics,
            [
                synced(clock, "A1", "INV-1"),
                registered(clock, "A1", "INV-1"),
                synced(clock, "A1", "INV-2"),
                registered(clock, "A1", "INV-2"),
            ],
        )
        await project_to_end(pool, topics, kafka_bootstrap)
        assert (await dump(pool, 1))["parked"] == []
        shown = await invoice("INV-1")
        assert (shown.pay_status, shown.not_payable_reason) == ("not_payable", "restricted")
        assert (shown.pay_button, shown.pay_button_reason) == (False, "restricted")
        assert shown.restriction is not None
        assert shown.restriction.reason_code == "pay_through_distributor"
        assert shown.restriction.message == "Invoices billed to CA are paid through your distributor"
        other = await invoice("INV-2")  # the policy decides per invoice, not per projector
        assert (other.pay_status, other.pay_button, other.restriction) == ("payable", True, None)

        await publish(kafka_bootstrap, topics, [restriction_changed(clock, "A1", "INV-1", restricted=False)])
        await project_to_end(pool, topics, kafka_bootstrap)
        lifted = await invoice("INV-1")
        assert (lifted.pay_status, lifted.not_payable_reason, lifted.pay_button) == ("payable", None, True)
        assert lifted.restriction is None
        row = await invoice_row(pool, "A1", "INV-1")
        assert row is not None
        assert row["restricted"] is False

        live = await dump(pool, 1)
        ctx = ops.Projecting(pool, topics, kafka_bootstrap, batch_size=2)
        result = await ops.rebuild(ctx, activate_when_done=False)
        assert await dump(pool, result.version) == live
    finally:
        await client.aclose()
        await pool.close()
