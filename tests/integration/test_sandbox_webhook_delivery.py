"""The sandbox provider delivers webhooks as Standard Webhooks describes: a retry schedule
(compressed here), `Retry-After` honoured, `410 Gone` stops at once, failed deliveries
listed and sent again on request with the same webhook id. Real HTTP both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from payment_intake_support import _serve, free_port, until

from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings
from sandbox_provider.webhooks import STANDARD_SCHEDULE_S, retry_after_s

pytestmark = pytest.mark.integration

SCHEDULE = (0.2, 0.2, 0.2, 0.2)


@dataclass
class Receiver:
    """Answers each webhook with the next scripted status (then 204), recording arrivals."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    arrivals: list[tuple[str, datetime]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> Response:
            self.arrivals.append((request.headers["webhook-id"], datetime.now()))
            status, headers = self.script.pop(0) if self.script else (204, {})
            return Response(status_code=status, headers=headers)

        return app


@dataclass
class Sandbox:
    http: httpx.AsyncClient
    receiver: Receiver

    async def webhook(self) -> str:
        """One webhook (a declined checkout), its id."""
        number = f"INV-{len(self.receiver.arrivals)}"
        invoice = {"account_id": "A1", "invoice_number": number, "currency": "USD"}
        await self.http.post("/v1/invoices", json={**invoice, "amount_minor": 500})
        opened = await self.http.post(
            "/v1/checkout-sessions",
            json={
                "payment_id": f"p-{invoice['invoice_number']}-{datetime.now().timestamp()}",
                "account_id": "A1",
                "amount_minor": 500,
                "currency": "USD",
                "method": "card",
                "invoices": [{"invoice_number": invoice["invoice_number"], "amount_minor": 500}],
            },
        )
        checkout_id = opened.json()["checkout_id"]
        before = {m["webhook_id"] for m in await self.messages()}
        (await self.http.post(f"/sandbox/checkouts/{checkout_id}/fail")).raise_for_status()
        return next(iter({m["webhook_id"] for m in await self.messages()} - before))

    async def messages(self) -> list[dict]:
        return (await self.http.get("/sandbox/webhooks", params={"state": "all"})).json()

    async def state(self, webhook_id: str) -> dict:
        return (await self.http.get(f"/sandbox/webhooks/{webhook_id}")).json()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    receiver = Receiver()
    receiver_port, sandbox_port = free_port(), free_port()
    receiver_server, receiver_task = await _serve(receiver.app(), receiver_port)
    app, sender = build_app(
        SandboxSettings.model_validate(
            {
                "port": sandbox_port,
                "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{receiver_port}/hook",
                "webhook_schedule_s": SCHEDULE,
            }
        )
    )
    sandbox_server, sandbox_task = await _serve(app, sandbox_port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sandbox_port}", timeout=5) as http:
        yield Sandbox(http, receiver)
    receiver_server.should_exit = sandbox_server.should_exit = True
    await sender.close()
    await receiver_task
    await sandbox_task


def test_the_default_schedule_spans_more_than_a_day() -> None:
    assert STANDARD_SCHEDULE_S[0] == 5 and sum(STANDARD_SCHEDULE_S) > 24 * 3600
    assert SandboxSettings().webhook_schedule_s == STANDARD_SCHEDULE_S
    assert retry_after_s("7", datetime.now()) == 7.0
    assert retry_after_s("not a date", datetime.now()) is None


async def test_a_webhook_is_retried_on_the_schedule_until_delivered(sandbox: Sandbox) -> None:
    sandbox.receiver.script = [(503, {}), (500, {})]
    webhook_id = await sandbox.webhook()
    delivered = await until(lambda: _in_state(sandbox, webhook_id, "delivered"), what="delivery")
    assert [a["status"] for a in delivered["attempts"]] == [503, 500, 204]
    assert [w for w, _ in sandbox.receiver.arrivals] == [webhook_id] * 3


async def test_retry_after_postpones_the_next_attempt(sandbox: Sandbox) -> None:
    sandbox.receiver.script = [(429, {"Retry-After": "2"})]
    webhook_id = await sandbox.webhook()
    await until(lambda: _in_state(sandbox, webhook_id, "delivered"), timeout=10, what="delivery")
    (_, first), (_, second) = sandbox.receiver.arrivals
    assert (second - first).total_seconds() >= 1.9  # not the 0.2 s the schedule says


async def test_410_gone_stops_at_once_and_a_failed_webhook_can_be_sent_again(sandbox: Sandbox) -> None:
    sandbox.receiver.script = [(410, {})]
    gone = await sandbox.webhook()
    state = await until(lambda: _in_state(sandbox, gone, "gone"), what="gone")
    assert len(state["attempts"]) == 1
    sandbox.receiver.script = [(503, {})] * (len(SCHEDULE) + 1)
    exhausted = await sandbox.webhook()
    state = await until(lambda: _in_state(sandbox, exhausted, "failed"), timeout=10, what="given up")
    assert len(state["attempts"]) == len(SCHEDULE) + 1
    listed = (await sandbox.http.get("/sandbox/webhooks/failed")).json()
    failed = {m["webhook_id"]: m["state"] for m in listed}
    assert failed == {gone: "gone", exhausted: "failed"}

    (await sandbox.http.post(f"/sandbox/webhooks/{exhausted}/resend")).raise_for_status()
    await until(lambda: _in_state(sandbox, exhausted, "delivered"), what="re-sent")
    assert sandbox.receiver.arrivals[-1][0] == exhausted  # the same id: the receiver dedupes it
    assert (await sandbox.http.post("/sandbox/webhooks/msg_nope/resend")).status_code == 404


async def _in_state(sandbox: Sandbox, webhook_id: str, state: str) -> dict | None:
    found = await sandbox.state(webhook_id)
    return found if found["state"] == state else None
