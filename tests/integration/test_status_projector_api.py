"""The read-model HTTP API over a real projected database."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
import pytest
from status_projector_support import (
    PORTAL_KEY,
    Clock,
    account_story,
    portal_client,
    project_to_end,
    projector_pool,
    publish,
    read_api,
    registered,
    synced,
)

from payments_contracts.topics import TopicRegistry
from payments_portal_client import NotFound, ReadModelClient, ReadModelError, Unauthorized
from status_projector.entrypoints.http import AccountSummary, InvoiceOut, InvoicePage

pytestmark = pytest.mark.integration


@pytest.fixture
async def projected(kafka_bootstrap: str, database_url: str, topics: TopicRegistry):  # type: ignore[no-untyped-def]
    clock = Clock()
    events = account_story(clock, "A1")
    for i in range(3, 12):  # more payable invoices to page through
        number = f"A1-INV-{i}"
        events += [
            synced(clock, "A1", number, due=date(2025, 3, i)),
            registered(clock, "A1", number),
        ]
    events.append(synced(clock, "A1", "A1-UNREG", due=date(2025, 4, 1)))
    await publish(kafka_bootstrap, topics, events)
    pool = await projector_pool(database_url)
    await project_to_end(pool, topics, kafka_bootstrap)
    yield pool
    await pool.close()


def _client(pool, topics: TopicRegistry, *, provider_configured: bool = True) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return portal_client(pool, topics, ["A1"], provider_configured=provider_configured)


async def test_one_invoice_shows_status_balance_payment_and_freshness(
    projected, topics: TopicRegistry
) -> None:  # type: ignore[no-untyped-def]
    async with _client(projected, topics) as client:
        paid = InvoiceOut.model_validate((await client.get("/v1/accounts/A1/invoices/A1-INV-0")).json())
        partial = InvoiceOut.model_validate((await client.get("/v1/accounts/A1/invoices/A1-INV-1")).json())
        pending = InvoiceOut.model_validate((await client.get("/v1/accounts/A1/invoices/A1-INV-2")).json())
        unregistered = InvoiceOut.model_validate(
            (await client.get("/v1/accounts/A1/invoices/A1-UNREG")).json()
        )
    assert (paid.pay_status, paid.balance.amount_minor, paid.pay_button) == ("paid", 0, False)
    assert paid.current_payment is not None
    assert paid.current_payment.state == "succeeded"
    assert (partial.pay_status, partial.balance.amount_minor, partial.pay_button) == (
        "partially_paid",
        6_000,
        True,
    )
    assert partial.last_problem is not None
    assert partial.last_problem.reason_code == "amount_above_balance"
    assert (pending.pay_status, pending.pay_button, pending.pay_button_reason) == (
        "pending",
        False,
        "pending",
    )
    assert (unregistered.pay_status, unregistered.not_payable_reason) == (
        "not_payable",
        "not_registered",
    )
    assert partial.order_number == "SO-A1-INV-1"
    assert partial.po_number == "PO-A1-INV-1"
    fresh = paid.freshness
    assert fresh.version == 1
    assert fresh.event_time is not None
    assert {o.topic for o in fresh.offsets} == {topics.invoices.name, topics.payments_events.name}
    assert all(o.next_offset > 0 for o in fresh.offsets)


async def test_list_filters_sorts_and_pages_with_a_cursor(projected, topics: TopicRegistry) -> None:  # type: ignore[no-untyped-def]
    async with _client(projected, topics) as client:
        seen: list[InvoiceOut] = []
        cursor = None
        while True:
            params = {"sort": "-due_date", "limit": 4, **({"cursor": cursor} if cursor else {})}
            page = InvoicePage.model_validate(
                (await client.get("/v1/accounts/A1/invoices", params=params)).json()
            )
            seen += page.items
            cursor = page.next_cursor
            if cursor is None:
                break
        payable = InvoicePage.model_validate(
            (
                await client.get(
                    "/v1/accounts/A1/invoices", params={"pay_status": ["payable", "partially_paid"]}
                )
            ).json()
        )
    assert len(seen) == 13
    keys = [(i.due_date, i.invoice_number) for i in seen]
    assert keys == sorted(keys, reverse=True)
    assert {i.pay_status for i in payable.items} == {"payable", "partially_paid"}
    assert len(payable.items) == 10


async def test_summary_gives_balance_per_currency_and_account_pay_button(
    projected, topics: TopicRegistry
) -> None:  # type: ignore[no-untyped-def]
    async with _client(projected, topics) as client:
        summary = AccountSummary.model_validate((await client.get("/v1/accounts/A1/summary")).json())
    async with _client(projected, topics, provider_configured=False) as client:
        unconfigured = AccountSummary.model_validate((await client.get("/v1/accounts/A1/summary")).json())
        invoice = InvoiceOut.model_validate((await client.get("/v1/accounts/A1/invoices/A1-INV-3")).json())
    [usd] = summary.balances
    # 0 (paid) + 6,000 (partial) + 10,000 (pending) + 9 x 10,000 + 10,000 (unregistered)
    assert usd.balance.amount_minor == 116_000
    # payment-intake would refuse the balance payment: one invoice is pending, one unregistered
    assert (usd.pay_button, usd.pay_button_reason) == (False, "payment_pending")
    assert (summary.pay_button, summary.pay_button_reason) == (False, "payment_pending")
    assert usd.by_status["paid"] == 1
    assert usd.invoices == 13
    assert not unconfigured.pay_button
    assert (invoice.pay_button, invoice.pay_button_reason) == (False, "provider_not_configured")


async def test_unknown_is_404_and_bad_parameters_422(projected, topics: TopicRegistry) -> None:  # type: ignore[no-untyped-def]
    async with _client(projected, topics) as client:
        assert (await client.get("/v1/accounts/NOPE/invoices")).status_code == 404
        assert (await client.get("/v1/accounts/NOPE/summary")).status_code == 404
        assert (await client.get("/v1/accounts/A1/invoices/NOPE")).status_code == 404
        assert (
            await client.get("/v1/accounts/A1/invoices", params={"pay_status": "owed"})
        ).status_code == 422
        assert (await client.get("/v1/accounts/A1/invoices", params={"sort": "total"})).status_code == 422
        assert (await client.get("/v1/accounts/A1/invoices", params={"limit": 0})).status_code == 422
        assert (
            await client.get("/v1/accounts/A1/invoices", params={"cursor": str(uuid.uuid4())})
        ).status_code == 422


async def test_the_typed_client_raises_a_typed_error_for_each_refusal(
    projected, topics: TopicRegistry
) -> None:  # type: ignore[no-untyped-def]
    """payments_portal_client against the real read API: the portal backend can tell a
    wrong key from an unknown account from a bad request without parsing HTTP."""
    app = read_api(projected, topics, ["A1"])
    good = ReadModelClient("http://projector", PORTAL_KEY, transport=app)
    wrong = ReadModelClient("http://projector", "pk_wrong_key", transport=app)
    async with good, wrong:
        with pytest.raises(Unauthorized) as refused:
            await wrong.summary("A1")
        with pytest.raises(NotFound) as unknown:
            await good.invoice("A1", "NO-SUCH-INVOICE")
        with pytest.raises(ReadModelError) as bad:
            await good.invoice_page("A1", limit=0)
        assert (await good.invoice("A1", "A1-INV-0")).invoice_number == "A1-INV-0"
    assert refused.value.status == 401 and refused.value.problem == {
        "detail": "a valid merchant API key is required"
    }
    assert unknown.value.status == 404 and "NO-SUCH-INVOICE" in unknown.value.problem["detail"]
    assert type(bad.value) is ReadModelError and bad.value.status == 422
    assert bad.value.problem["detail"][0]["loc"] == ["query", "limit"]
