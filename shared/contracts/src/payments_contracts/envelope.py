"""The versioned envelope every message on every topic travels in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Self
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Producers must send these: a consumer dedupes by event_id and orders by occurred_at.
# (Our own models fill them in when built; the published contract requires them.)
ALWAYS_SENT = ("event_id", "type", "schema_version", "occurred_at")


def _require_header(schema: dict[str, Any]) -> None:
    required = schema.setdefault("required", [])
    for name in ALWAYS_SENT:
        if name in schema.get("properties", {}) and name not in required:
            required.append(name)
    required.sort()

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

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_require_header)

    event_id: UUID = Field(
        default_factory=uuid4,
        description="The dedupe key: a repeat of a message has the same event_id; a new fact a new one.",
    )
    type: str
    schema_version: int = Field(1, description="1 for every message type today; raised on a breaking change.")
    occurred_at: AwareDatetime = Field(
        default_factory=utc_now, description="When the producer recorded the fact, with a UTC offset."
    )
    producer: str = Field(description="The service or system that wrote the message (e.g. `erp`, `portal`).")
    correlation_id: UUID = Field(
        description="The command or ERP document that started this chain of effects. A message that "
        "starts a chain (a command, an ERP document, a provider callback) carries its own event_id "
        "here; every message caused by it carries the same value. A portal finds the answers to its "
        "command by this field."
    )
    causation_id: UUID | None = Field(
        None,
        description="The event_id of the message that directly caused this one; null on a message "
        "that starts a chain.",
    )
    account_id: AccountId = Field(description="The ERP customer account; also the Kafka message key.")
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
