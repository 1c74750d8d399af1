"""Parked messages kept decoded between batches stay bounded: one another instance
unparks never comes back for its entry, and over a long run those add up."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import pytest
from integration.status_projector_support import Clock, requested

from payments_platform.messaging import Transaction
from payments_platform.messaging.fast_decoding import encode
from status_projector.adapters import projection_batch
from status_projector.adapters.projection_batch import PostgresProjectionBatch
from status_projector.adapters.schema import VersionTables
from status_projector.domain.model import Park


def test_decoded_parked_messages_stay_bounded_and_evicted_ones_decode_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(projection_batch, "DECODED_KEPT", 3)
    decoded: dict[object, Any] = {}
    # Parking reads and writes nothing in the database until commit.
    batch = PostgresProjectionBatch(Transaction(cast(Any, None), cast(Any, None)), VersionTables(1), decoded)
    clock = Clock()
    messages = [requested(clock, "ACC-1", uuid.uuid4(), [(f"INV-{n}", 100)]) for n in range(7)]
    for offset, message in enumerate(messages):
        batch.park(
            message, ("payments.events", 0, offset), Park("unknown invoice", f"invoice:ACC-1/INV-{offset}")
        )
        assert len(decoded) <= 3

    parked = sorted(batch._parked.values(), key=lambda e: e.position)
    assert [e.event_id for e in parked] == [m.event_id for m in messages]
    assert batch.parked_message(parked[-1]) is messages[-1]  # still kept: no decode
    # dropped: decoded from its JSON, as the live projection decodes (a Struct of the same shape)
    assert json.loads(encode(batch.parked_message(parked[0]))) == json.loads(messages[0].model_dump_json())
