"""The committed OpenAPI document of the sandbox provider (provider API and controls)."""

from __future__ import annotations

import httpx

from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.entrypoints.openapi import DOCUMENT, document
from sandbox_provider.settings import SandboxSettings


def test_committed_openapi_document_is_current() -> None:
    # Regenerate with: make contracts
    assert not DOCUMENT.is_stale(), f"stale: run {DOCUMENT.regenerate}"


def test_the_provider_api_offers_status_query_cancel_and_refunds() -> None:
    paths = document()["paths"]
    assert "get" in paths["/v1/checkouts/{checkout_id}"]
    assert "post" in paths["/v1/checkouts/{checkout_id}/cancel"]
    assert "post" in paths["/v1/refunds"] and "get" in paths["/v1/refunds/{refund_id}"]
    assert "post" in paths["/sandbox/webhooks/{webhook_id}/resend"]
    assert "get" in paths["/sandbox/webhooks/failed"]


async def test_the_webhook_options_body_is_typed_and_documented() -> None:
    """Tests switch webhooks off with `drop`; a misspelt option is refused, not a 500."""
    operation = document()["paths"]["/sandbox/webhook-options"]["put"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    body = document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert set(body["properties"]) == {"duplicate", "reorder", "stale_timestamp", "drop"}
    assert all(p.get("description") for p in body["properties"].values())
    assert body["additionalProperties"] is False
    app, _ = build_app(SandboxSettings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sandbox") as client:
        answer = await client.put("/sandbox/webhook-options", json={"drop": True})
        assert answer.status_code == 200 and answer.json()["drop"] is True
        assert (await client.put("/sandbox/webhook-options", json={"dorp": True})).status_code == 422
