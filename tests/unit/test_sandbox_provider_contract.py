"""The committed OpenAPI document of the sandbox provider (provider API and controls)."""

from __future__ import annotations

from sandbox_provider.entrypoints.openapi import DOCUMENT, document


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
