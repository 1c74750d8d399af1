"""The committed OpenAPI document of the read-model API, and its cursors."""

from __future__ import annotations

from datetime import date

import pytest
from fastapi.exceptions import RequestValidationError

from status_projector.entrypoints.http import decode_cursor, encode_cursor
from status_projector.entrypoints.openapi import DOCUMENT, document


def test_committed_openapi_document_is_current() -> None:
    # Regenerate with: .venv/bin/python -m status_projector.entrypoints.openapi
    assert not DOCUMENT.is_stale(), f"stale: run {DOCUMENT.regenerate}"


def test_openapi_has_the_four_read_paths() -> None:
    paths = set(document()["paths"])
    assert paths == {
        "/v1/accounts/{account_id}/invoices",
        "/v1/accounts/{account_id}/invoices/{invoice_number}",
        "/v1/accounts/{account_id}/remittance",
        "/v1/accounts/{account_id}/summary",
    }


def test_every_database_backed_route_documents_503_with_retry_after() -> None:
    """A portal must know to expect 503 + Retry-After while the database is away."""
    for path in ("invoices", "invoices/{invoice_number}", "summary"):
        get = document()["paths"][f"/v1/accounts/{{account_id}}/{path}"]["get"]
        answer = get["responses"]["503"]
        assert "Retry-After" in answer["headers"], path
        assert "application/problem+json" in answer["content"], path
        assert "min_offset" in {p["name"] for p in get["parameters"]}, path


def test_cursor_round_trips() -> None:
    cursor = encode_cursor("-due_date", date(2025, 3, 1), "INV-9")
    assert decode_cursor(cursor, "-due_date") == (date(2025, 3, 1), "INV-9")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!!",
        "W10",
        encode_cursor("due_date", date(2025, 1, 1), "X"),
        encode_cursor("-due_date", date(2025, 1, 1), "X\x00"),  # PostgreSQL text holds no NUL
        encode_cursor("-due_date", date(2025, 1, 1), "X\ud800"),  # nor a lone surrogate
        "\ud800",
    ],
)
def test_foreign_mismatched_or_unstorable_cursor_is_a_validation_error(cursor: str) -> None:
    # Rendered as the documented 422 body (HTTPValidationError), like any bad parameter.
    with pytest.raises(RequestValidationError) as raised:
        decode_cursor(cursor, "-due_date")
    assert raised.value.errors()[0]["loc"] == ("query", "cursor")


FASTAPI_OWN = {"HTTPValidationError", "ValidationError"}


def test_every_field_and_parameter_of_the_read_api_is_described() -> None:
    """A portal team reads the generated document: a field without a description is a
    field they have to guess (the descriptions live on the pydantic models)."""
    spec = document()
    bare = [
        f"{name}.{field}"
        for name, schema in spec["components"]["schemas"].items()
        if name not in FASTAPI_OWN
        for field, definition in schema.get("properties", {}).items()
        if not definition.get("description")
    ]
    bare += [
        f"{method.upper()} {path} {parameter['name']}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for parameter in operation.get("parameters", [])
        if not (parameter.get("description") or parameter["schema"].get("description"))
    ]
    assert bare == []
