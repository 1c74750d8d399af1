"""The committed OpenAPI document of the sandbox provider: the provider API our services
call (registration, checkouts, status query, cancel, refunds) and the `/sandbox/*`
controls tests and people use.

.venv/bin/python -m sandbox_provider.entrypoints.openapi          # regenerate
.venv/bin/python -m sandbox_provider.entrypoints.openapi --check  # fail if stale
"""

from __future__ import annotations

import json
from typing import Any

from payments_platform.documents import CONTRACTS, CommittedDocument, openapi_json
from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings


def render() -> str:
    app, _ = build_app(SandboxSettings())
    return openapi_json(app)


def document() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(render())
    return parsed


DOCUMENT = CommittedDocument(
    CONTRACTS / "openapi" / "sandbox-provider.json", render, "python -m sandbox_provider.entrypoints.openapi"
)

if __name__ == "__main__":
    DOCUMENT.main()
