"""Write (or `--check`) the committed OpenAPI document of the read-model API.

.venv/bin/python -m status_projector.entrypoints.openapi          # regenerate
.venv/bin/python -m status_projector.entrypoints.openapi --check  # fail if stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fastapi.openapi.utils import get_openapi

from payments_contracts.topics import TopicRegistry
from status_projector.domain.access import PortalKeys
from status_projector.entrypoints.http import build_app
from status_projector.entrypoints.merchants import with_merchant_routes

DOCUMENT = Path(__file__).resolve().parents[5] / "contracts" / "openapi" / "status-projector.json"


def document() -> dict[str, Any]:
    app = build_app(None, TopicRegistry(), PortalKeys([]), provider_configured=True)
    with_merchant_routes(app)
    return get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    args = parser.parse_args()
    wanted = render()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != wanted:
            print(
                f"{DOCUMENT} is stale; run python -m status_projector.entrypoints.openapi",
                file=sys.stderr,
            )
            raise SystemExit(1)
        return
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(wanted)
    print(f"wrote {DOCUMENT}")


if __name__ == "__main__":
    main()
