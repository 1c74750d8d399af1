"""The committed OpenAPI document of the read-model API.

.venv/bin/python -m status_projector.entrypoints.openapi          # regenerate
.venv/bin/python -m status_projector.entrypoints.openapi --check  # fail if stale
"""

from __future__ import annotations

import json
from typing import Any

from payments_contracts.topics import TopicRegistry
from payments_platform.documents import CONTRACTS, CommittedDocument, openapi_json
from status_projector.domain.access import PortalKeys
from status_projector.entrypoints.http import build_app
from status_projector.entrypoints.merchants import with_merchant_routes


def render() -> str:
    app = build_app(None, TopicRegistry(), PortalKeys([]), provider_configured=True)
    with_merchant_routes(app)
    return openapi_json(app)


def document() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(render())
    return parsed


DOCUMENT = CommittedDocument(
    CONTRACTS / "openapi" / "status-projector.json", render, "status-projector-ops openapi"
)

if __name__ == "__main__":
    DOCUMENT.main()
