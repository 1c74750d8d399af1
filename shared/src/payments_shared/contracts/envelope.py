"""The versioned envelope every message on every topic travels in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

AccountId = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
InvoiceNumber = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Envelope(BaseModel):
    """Common header of every message; subclasses pin `type` and `payload`.

    `event_id` is the dedupe key. `correlation_id` names the command or ERP document
    that started a chain of effects; `causation_id` the message that directly caused
    this one. Topics are keyed by `account_id`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: UUID = Field(default_factory=uuid4)
    type: str
    schema_version: int = 1
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    producer: str
    correlation_id: UUID
    causation_id: UUID | None = None
    account_id: AccountId
    payload: Any

    @classmethod
    def following(cls, cause: Envelope, *, producer: str, payload: Any, **fields: Any) -> Self:
        """A message caused by `cause`: same account and correlation, causation = cause."""
        return cls(
            producer=producer,
            correlation_id=cause.correlation_id,
            causation_id=cause.event_id,
            account_id=cause.account_id,
            payload=payload,
            **fields,
        )

    @classmethod
    def originating(cls, *, producer: str, account_id: str, payload: Any, **fields: Any) -> Self:
        """A message that starts a new chain: its own id is the correlation id."""
        event_id = fields.pop("event_id", None) or uuid4()
        return cls(
            event_id=event_id,
            producer=producer,
            correlation_id=event_id,
            account_id=account_id,
            payload=payload,
            **fields,
        )

    def key(self) -> bytes:
        return self.account_id.encode()
