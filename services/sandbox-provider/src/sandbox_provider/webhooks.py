"""Signed webhook delivery with retries (Standard Webhooks: webhook-id/-timestamp/-signature)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

log = logging.getLogger(__name__)


class DeliveryRefused(Exception):
    pass


@dataclass
class WebhookOptions:
    duplicate: int = 1  # send each webhook this many times
    reorder: bool = False  # deliver a checkout's webhooks newest first
    stale_timestamp: bool = False  # sign with a timestamp outside the tolerance


class WebhookSender:
    def __init__(self, url: str, secret: str, attempts: int) -> None:
        self._url = url
        self._signer = Webhook(secret)
        self._attempts = attempts
        self._client = httpx.AsyncClient(timeout=10.0)
        self._tasks: set[asyncio.Task[None]] = set()
        self.options = WebhookOptions()
        self.delivered: list[dict[str, Any]] = []

    def build(self, event_type: str, data: dict[str, Any]) -> tuple[str, str]:
        body = json.dumps({"type": event_type, "timestamp": datetime.now(UTC).isoformat(), "data": data})
        return f"msg_{uuid.uuid4().hex}", body

    def send_all(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        """Queue webhooks for delivery in order (or reversed, or duplicated, if asked)."""
        built = [self.build(t, d) for t, d in events]
        if self.options.reorder:
            built.reverse()
        task = asyncio.create_task(self._deliver_in_order(built))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_in_order(self, built: list[tuple[str, str]]) -> None:
        for msg_id, body in built:
            for _ in range(max(1, self.options.duplicate)):
                await self._deliver(msg_id, body)

    async def _deliver(self, msg_id: str, body: str) -> None:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((httpx.HTTPError, DeliveryRefused)),
                wait=wait_exponential_jitter(multiplier=0.2, max=30),
                stop=stop_after_attempt(self._attempts),
                reraise=True,
            ):
                with attempt:
                    response = await self._client.post(
                        self._url, content=body, headers=self.headers(msg_id, body)
                    )
                    if response.status_code >= 300:
                        raise DeliveryRefused(f"{response.status_code}: {response.text[:200]}")
            self.delivered.append({"webhook_id": msg_id, "body": json.loads(body)})
        except Exception as exc:
            log.error("webhook given up", extra={"webhook_id": msg_id, "error": repr(exc)})

    def headers(self, msg_id: str, body: str) -> dict[str, str]:
        now = datetime.now(UTC)
        if self.options.stale_timestamp:
            now = now.replace(year=now.year - 1)
        return {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(msg_id, now, body),
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()
