"""Each message of a transaction serialized once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from payment_intake.messages import AnswerOutcome
from payments_contracts import Envelope


class Serialized:
    """The JSON of the messages of one unit of work, by event id: an answer is dumped once
    for both its outbox row and the outcome kept under its idempotency key."""

    def __init__(self) -> None:
        self._json: dict[UUID, str] = {}

    def of(self, message: Envelope) -> str:
        text = self._json.get(message.event_id)
        if text is None:
            text = self._json[message.event_id] = message.model_dump_json()
        return text

    def outcome(self, outcome: Mapping[str, Any]) -> tuple[str | None, str | None]:
        """An outcome to store as (its JSON, None), or (None, the JSON of the answer it
        comes from): the statement then keeps the answer's event id and payload."""
        if isinstance(outcome, AnswerOutcome):
            return None, self.of(outcome.answer)
        return json.dumps(dict(outcome)), None
