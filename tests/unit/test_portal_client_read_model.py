"""The client's read-model types stay generated from the committed OpenAPI document."""

from __future__ import annotations

from pathlib import Path

from payments_portal_client.generate import MODELS, generate

ROOT = Path(__file__).resolve().parents[2]


def test_read_model_types_are_generated_from_the_committed_openapi(tmp_path: Path) -> None:
    # Regenerate with `make contracts`.
    out = tmp_path / "read_model.py"
    generate(ROOT / "contracts" / "openapi" / "status-projector.json", out)
    assert out.read_text() == MODELS.read_text(), "stale: run make contracts"
