"""Write (or `--check`) demo-portal's committed AsyncAPI document, as FastStream derives
it from the portal's publisher and subscriber.

.venv/bin/python -m demo_portal.entrypoints.asyncapi          # regenerate
.venv/bin/python -m demo_portal.entrypoints.asyncapi --check  # fail if stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from demo_portal.adapters.messaging import messaging, specification
from payments_contracts.topics import TopicRegistry

# Apart from contracts/asyncapi/, which payments-contracts generates and owns.
DOCUMENT = Path(__file__).resolve().parents[5] / "contracts" / "faststream" / "demo-portal.yaml"
# The document names a server; the real bootstrap is a deployment's, not the contract's.
DOCUMENTED_BOOTSTRAP = "kafka:9092"


def render() -> str:
    wiring = messaging(DOCUMENTED_BOOTSTRAP, TopicRegistry())
    return str(specification(wiring.broker).to_specification().to_yaml())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the committed file is stale")
    args = parser.parse_args()
    wanted = render()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text() != wanted:
            print(f"{DOCUMENT} is stale; run python -m demo_portal.entrypoints.asyncapi", file=sys.stderr)
            sys.exit(1)
        return
    DOCUMENT.write_text(wanted)


if __name__ == "__main__":
    main()
