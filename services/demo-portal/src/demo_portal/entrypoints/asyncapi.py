"""demo-portal's committed AsyncAPI document, as FastStream derives it from the portal's
publisher and subscriber (apart from contracts/asyncapi/, which payments-contracts
generates and owns).

.venv/bin/python -m demo_portal.entrypoints.asyncapi          # regenerate
.venv/bin/python -m demo_portal.entrypoints.asyncapi --check  # fail if stale
"""

from __future__ import annotations

from demo_portal.adapters.messaging import messaging, specification
from payments_contracts.topics import TopicRegistry
from payments_platform.documents import CONTRACTS, CommittedDocument

# The document names a server; the real bootstrap is a deployment's, not the contract's.
DOCUMENTED_BOOTSTRAP = "kafka:9092"


def render() -> str:
    wiring = messaging(DOCUMENTED_BOOTSTRAP, TopicRegistry())
    return str(specification(wiring.broker).to_specification().to_yaml())


DOCUMENT = CommittedDocument(
    CONTRACTS / "faststream" / "demo-portal.yaml", render, "python -m demo_portal.entrypoints.asyncapi"
)

if __name__ == "__main__":
    DOCUMENT.main()
