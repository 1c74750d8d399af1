"""Regenerate the read-model API's typed models (`read_model.py`) from the committed
OpenAPI document, so a change of the API's contract changes the client's types."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "read_model.py"


def generate(openapi: Path, out: Path) -> None:
    codegen = Path(sys.executable).parent / "datamodel-codegen"
    subprocess.run(
        [
            str(codegen),
            "--input", str(openapi),
            "--input-file-type", "openapi",
            "--output-model-type", "pydantic_v2.BaseModel",
            "--target-python-version", "3.11",
            "--use-annotated",
            "--use-standard-collections",
            "--use-union-operator",
            "--disable-timestamp",
            "--formatters", "builtin",
            "--custom-file-header",
            '"""Generated from contracts/openapi/status-projector.json by'
            ' `make contracts`; do not edit."""',
            "--output", str(out),
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--openapi", type=Path, default=Path("contracts/openapi/status-projector.json"))
    parser.add_argument("--out", type=Path, default=MODELS)
    args = parser.parse_args()
    generate(args.openapi, args.out)


if __name__ == "__main__":
    main()
