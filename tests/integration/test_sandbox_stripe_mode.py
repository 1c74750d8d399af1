"""The sandbox provider's Stripe mode, judged by Stripe's own description of its API: the
Stripe connector runs whole flows against it (stripe-mock keeps no state), and every
object it answers or sends in an event validates against the schema stripe-mock
validates with (spec3.json of the same stripe-mock module): every required field there,
no field Stripe does not have, every type Stripe's. The same calls against stripe-mock
parse into the same library classes. Its webhooks verify with the `stripe` library."""

from __future__ import annotations

import asyncio
import copy
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema
import pytest
import stripe
import uvicorn
from fastapi import FastAPI, Request
from payment_intake_support import until
from test_stripe_connector import MERCHANT, payment

from payment_intake.adapters.stripe_checkouts import StripeCheckouts
from payment_intake.domain.provider import ClaimedCheckout
from payment_intake.domain.refunds import Refund
from payments_platform.provider_credentials import SANDBOX_STRIPE_SECRET_KEY, SANDBOX_STRIPE_WEBHOOK_SECRET
from runtime import free_port
from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings
from stripe_mock import stripe_openapi

pytestmark = pytest.mark.integration


def _openapi_to_jsonschema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema; `$ref`s kept (resolved against the spec)."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-")}
    if converted.pop("nullable", False):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@pytest.fixture(scope="module")
def judge() -> Any:
    spec = _openapi_to_jsonschema(copy.deepcopy(stripe_openapi()))
    schemas = spec["components"]["schemas"]

    def check(name: str, found: dict[str, Any]) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        jsonschema.Draft7Validator(schema).validate(found)
        invented = set(found) - set(schemas[name]["properties"])
        assert not invented, f"{name}: fields Stripe does not have: {sorted(invented)}"

    return check


@pytest.fixture
async def sandbox():
    port, receiver_port = free_port(), free_port()
    received: list[tuple[bytes, str]] = []
    receiver = FastAPI()

    @receiver.post("/callbacks/stripe")
    async def take(request: Request) -> dict[str, str]:
        received.append((await request.body(), request.headers.get("stripe-signature", "")))
        return {"status": "accepted"}

    app, sender = build_app(
        SandboxSettings.model_validate(
            {
                "port": port,
                "public_url": f"http://127.0.0.1:{port}",
                "stripe_webhook_url": f"http://127.0.0.1:{receiver_port}/callbacks/stripe",
                "refund_settle_s": 0.05,
            }
        )
    )
    servers = [
        uvicorn.Server(uvicorn.Config(a, host="127.0.0.1", port=p, log_config=None, lifespan="off"))
        for a, p in ((app, port), (receiver, receiver_port))
    ]
    for server in servers:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    await until(lambda: all(s.started for s in servers), what="sandbox and receiver")
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        await sender.close()


async def _get(base: str, path: str, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}"}) as http:
        response = await http.get(base + path, params=params)
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found


def _event(received: list[tuple[bytes, str]], kind: str) -> dict[str, Any]:
    for body, signature in received:
        event = stripe.Webhook.construct_event(body, signature, SANDBOX_STRIPE_WEBHOOK_SECRET)
        if event.type == kind:
            found: dict[str, Any] = event.to_dict()
            return found
    raise AssertionError(f"no {kind} event among {len(received)}")


async def test_a_seed_000_checkout_completes_and_is_refunded_in_stripes_shapes(sandbox, judge, stripe_mock):
    base, received = sandbox
    connector = StripeCheckouts(MERCHANT, api_base=base + "/stripe", attempts=1)
    try:
        paying = payment((("INV-1001", 125_000),))
        opened = await connector.open_checkout(paying)
        again = await connector.open_checkout(paying)  # a retry after a crash: the same session
        assert again.checkout_id == opened.checkout_id
        assert opened.expires_at >= datetime.now(UTC) + timedelta(minutes=29)
        session = await _get(
            base, f"/stripe/v1/checkout/sessions/{opened.checkout_id}", **{"expand[]": "payment_intent"}
        )
        judge("checkout.session", {**session, "payment_intent": session["payment_intent"]["id"]})
        judge("payment_intent", session["payment_intent"])
        assert session["metadata"]["payment_id"] == str(paying.payment_id)

        claimed = ClaimedCheckout(
            paying.payment_id, paying.account_id, opened.checkout_id, datetime.now(UTC), 1
        )
        assert (await connector.checkout_state(claimed)).status == "open"
        async with httpx.AsyncClient() as http:
            done = await http.post(f"{base}/sandbox/checkouts/{opened.checkout_id}/complete")
            assert done.status_code == 200, done.text
        await until(lambda: any(b"checkout.session.completed" in b for b, _ in received), what="the event")
        completed = _event(received, "checkout.session.completed")
        judge("event", completed)
        judge("checkout.session", completed["data"]["object"])
        state = await connector.checkout_state(claimed)
        assert (state.status, state.amount_minor, state.currency) == ("succeeded", 125_000, "USD")

        refund = Refund(
            uuid.uuid4(),
            paying.payment_id,
            paying.account_id,
            125_000,
            "USD",
            "double_payment",
            "policy",
            "requested",
            None,
            0,
            opened.checkout_id,
            datetime.now(UTC),
        )
        answered = await connector.refund(refund)
        assert answered.status == "pending" and answered.provider_refund_id
        assert (await connector.refund(refund)).provider_refund_id == answered.provider_refund_id  # same key
        judge("refund", await _get(base, f"/stripe/v1/refunds/{answered.provider_refund_id}"))
        await until(lambda: any(b"refund.updated" in b for b, _ in received), what="the refund event")
        settled = _event(received, "refund.updated")
        judge("refund", settled["data"]["object"])
        assert settled["data"]["object"]["metadata"]["refund_id"] == str(refund.refund_id)
        synced = await connector.refund_state(
            Refund(
                **{
                    **refund.__dict__,
                    "status": "submitted",
                    "provider_refund_id": answered.provider_refund_id,
                }
            )
        )
        assert synced.status == "succeeded"
    finally:
        await connector.close()
    # The same requests against stripe-mock parse into the same library classes.
    mocked = StripeCheckouts(MERCHANT, api_base=stripe_mock, attempts=1)
    ours = StripeCheckouts(MERCHANT, api_base=base + "/stripe", attempts=1)
    try:
        for client in (mocked.client, ours.client):
            found = await client.v1.checkout.sessions.retrieve_async(opened.checkout_id)
            assert type(found) is stripe.checkout.Session
    finally:
        await mocked.close()
        await ours.close()


async def test_payer_portal_customer_cancel_and_a_failed_delayed_payment(sandbox, judge):
    base, received = sandbox
    connector = StripeCheckouts(MERCHANT, api_base=base + "/stripe", attempts=1)
    try:
        portal = payment(
            (("INV-1001", 125_000), ("INV-1002", 31_040)), method="payer_portal", scope="account_balance"
        )
        opened = await connector.open_checkout(portal)
        search = await _get(base, "/stripe/v1/customers/search", query="metadata['account_id']:'C-10042'")
        assert len(search["data"]) == 1
        judge("customer", search["data"][0])
        session = await _get(base, f"/stripe/v1/checkout/sessions/{opened.checkout_id}")
        assert session["customer"] == search["data"][0]["id"]
        await connector.open_checkout(payment((("INV-1003", 5_000),), method="payer_portal"))
        again = await _get(base, "/stripe/v1/customers/search", query="metadata['account_id']:'C-10042'")
        assert len(again["data"]) == 1  # one customer per account

        claimed = ClaimedCheckout(
            portal.payment_id, portal.account_id, opened.checkout_id, datetime.now(UTC), 1
        )
        cancelled = await connector.cancel_checkout(claimed)
        assert cancelled.status == "expired"
        await until(lambda: any(b"checkout.session.expired" in b for b, _ in received), what="expired event")
        judge("checkout.session", _event(received, "checkout.session.expired")["data"]["object"])

        partial = payment((("INV-2101", 50_000),), method="card", account="A-20077")
        delayed = await connector.open_checkout(partial)
        async with httpx.AsyncClient() as http:
            assert (
                await http.post(f"{base}/sandbox/checkouts/{delayed.checkout_id}/fail")
            ).status_code == 200
        await until(lambda: any(b"async_payment_failed" in b for b, _ in received), what="failed event")
        judge("checkout.session", _event(received, "checkout.session.async_payment_failed")["data"]["object"])
        state = await connector.checkout_state(
            ClaimedCheckout(partial.payment_id, partial.account_id, delayed.checkout_id, datetime.now(UTC), 1)
        )
        assert state.status == "failed"
    finally:
        await connector.close()


async def test_it_refuses_what_stripe_refuses(sandbox):
    base, _ = sandbox
    async with httpx.AsyncClient() as http:
        live = await http.post(
            base + "/stripe/v1/customers", headers={"authorization": "Bearer sk_live_123"}, data={"name": "x"}
        )
        assert live.status_code == 401
        soon = await http.post(
            base + "/stripe/v1/checkout/sessions",
            headers={"authorization": f"Bearer {SANDBOX_STRIPE_SECRET_KEY}"},
            data={"mode": "payment", "expires_at": str(int(datetime.now(UTC).timestamp()) + 900)},
        )
        assert soon.status_code == 400 and soon.json()["error"]["param"] == "expires_at"
