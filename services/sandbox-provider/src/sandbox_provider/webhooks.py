"""Signed webhook delivery as Standard Webhooks describes it.

Each message is tried at once and then on a retry schedule spanning hours to days
(the spec's example: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h). `time_scale`
compresses the schedule for tests (0.001: the whole schedule in about a minute). A
`Retry-After` answer postpones the next attempt to at least that long; `410 Gone`
stops the message at once (the receiver says the endpoint is gone). Messages that
used up the schedule, were refused with 410, or were dropped on purpose are kept in
a list and can be sent again on request, with the same `webhook-id` (the receiver
dedupes it). Each attempt is signed with a fresh timestamp.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field
from standardwebhooks.webhooks import Webhook

log = logging.getLogger(__name__)

# Standard Webhooks' example schedule, after the immediate first attempt (seconds).
STANDARD_SCHEDULE_S: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)

State = Literal["pending", "delivered", "failed", "gone", "dropped"]


class WebhookOptions(BaseModel):
    """How the sandbox misbehaves when it sends webhooks (`PUT /sandbox/webhook-options`;
    a field left out is reset to its default)."""

    model_config = ConfigDict(extra="forbid")

    duplicate: int = Field(1, ge=1, description="Send each webhook this many times (same webhook-id)")
    reorder: bool = Field(False, description="Deliver a checkout's webhooks newest first")
    stale_timestamp: bool = Field(
        False, description="Sign with a timestamp outside the receiver's tolerance (it must refuse them)"
    )
    drop: bool = Field(
        False,
        description="Send nothing, as if each webhook were lost; kept in GET /sandbox/webhooks/failed "
        "for a re-send",
    )


@dataclass
class Attempt:
    at: str
    status: int | None
    error: str | None = None


@dataclass
class Message:
    webhook_id: str
    type: str
    body: str
    state: State = "pending"
    attempts: list[Attempt] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": self.type,
            "state": self.state,
            "attempts": [vars(a) for a in self.attempts],
            "body": json.loads(self.body),
        }


def _about(message: Message) -> dict[str, object]:
    return {"webhook_id": message.webhook_id, "webhook_type": message.type, "attempt": len(message.attempts)}


def retry_after_s(header: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


class WebhookSender:
    def __init__(
        self,
        url: str,
        secret: str,
        *,
        schedule_s: tuple[float, ...] = STANDARD_SCHEDULE_S,
        time_scale: float = 1.0,
    ) -> None:
        self._url = url
        self._secret = secret
        self._signer = self.signer(secret)
        self._schedule = schedule_s
        self._scale = time_scale
        self._client = httpx.AsyncClient(timeout=10.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self.options = WebhookOptions()
        self.messages: dict[str, Message] = {}
        self.companions: list[WebhookSender] = []  # closed with this one (Stripe mode's sender)

    def signer(self, secret: str) -> Webhook | None:
        return Webhook(secret)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [
            {"webhook_id": m.webhook_id, "body": json.loads(m.body)}
            for m in self.messages.values()
            if m.state == "delivered"
        ]

    def failed(self) -> list[dict[str, Any]]:
        return [m.summary() for m in self.messages.values() if m.state in ("failed", "gone", "dropped")]

    def build(self, event_type: str, data: dict[str, Any]) -> Message:
        body = json.dumps({"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data})
        message = Message(f"msg_{uuid.uuid4().hex}", event_type, body)
        self.messages[message.webhook_id] = message
        return message

    def send_all(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue webhooks for delivery in order (or reversed, duplicated or dropped, if asked)."""
        built = [self.build(t, d) for t, d in events]
        if self.options.drop:
            for message in built:
                message.state = "dropped"
            log.info("webhooks dropped on purpose", extra={"webhook_ids": [m.webhook_id for m in built]})
            return
        if self.options.reorder:
            built.reverse()
        self._spawn(self._deliver_in_order(built, max(1, self.options.duplicate)))

    def resend(self, webhook_id: str) -> Message | None:
        """Deliver a message again (same webhook id), with a fresh schedule."""
        message = self.messages.get(webhook_id)
        if message is None:
            return None
        message.state = "pending"
        self._spawn(self._deliver(message))
        return message

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, built: list[Message], copies: int) -> None:
        for message in built:
            for _ in range(copies):
                await self._deliver(message)

    async def _deliver(self, message: Message) -> None:
        waits = (0.0, *self._schedule)
        postponed = 0.0
        for wait in waits:
            await asyncio.sleep(max(wait, postponed) * self._scale)
            now = datetime.now(UTC)
            try:
                response = await self._client.post(
                    self._url, content=message.body, headers=self.headers(message.webhook_id, message.body)
                )
            except httpx.HTTPError as exc:
                message.attempts.append(Attempt(now.isoformat(), None, repr(exc)))
                log.info("webhook attempt failed", extra={**_about(message), "error": repr(exc)})
                postponed = 0.0
                continue
            message.attempts.append(Attempt(now.isoformat(), response.status_code))
            if response.status_code < 300:
                message.state = "delivered"
                log.info("webhook delivered", extra={**_about(message), "status": response.status_code})
                return
            if response.status_code == 410:
                message.state = "gone"
                log.warning("webhook endpoint gone (410); not retrying", extra=_about(message))
                return
            log.info("webhook attempt failed", extra={**_about(message), "status": response.status_code})
            postponed = retry_after_s(response.headers.get("retry-after"), now) or 0.0
        message.state = "failed"
        log.error("webhook given up after the retry schedule", extra=_about(message))

    def headers(self, msg_id: str, body: str) -> dict[str, str]:
        now = datetime.now(UTC)
        if self.options.stale_timestamp:
            now = now.replace(year=now.year - 1)
        return {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, now, body) if self._signer else "",
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
        for companion in self.companions:
            await companion.close()
