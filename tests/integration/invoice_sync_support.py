"""Helpers for invoice-sync's integration tests: the sandbox provider as a real local HTTP
server, the service's parts (consumer, registration worker, outbox relay) on a test
database and prefixed topics, ERP documents, and reading what came out on `invoices`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import uvicorn
from pydantic import TypeAdapter

from invoice_sync.adapters.provider import HttpProvider
from invoice_sync.adapters.schema import install
from invoice_sync.adapters.unit_of_work import UnitsOfWork
from invoice_sync.entrypoints.main import handle_batch
from invoice_sync.settings import SCHEMA, SERVICE
from invoice_sync.workers import RegistrationWorker
from kafka_tools import read_all
from payments_contracts import Envelope, InvoiceEvent
from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.database import open_pool
from payments_platform.messaging import OutboxRelay, TransactionalConsumer
from sandbox_provider.entrypoints.http import build_app
from sandbox_provider.settings import SandboxSettings
from system import free_port

INVOICE_EVENTS: TypeAdapter[Envelope] = TypeAdapter(InvoiceEvent)


@contextlib.asynccontextmanager
async def sandbox_provider() -> AsyncIterator[str]:
    """The sandbox provider on a free loopback port, served in this event loop."""
    port = free_port()
    app, sender = build_app(SandboxSettings(port=port, public_url=f"http://127.0.0.1:{port}"))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        await sender.close()


def document(
    account: str,
    number: str,
    version: int = 1,
    *,
    total: str = "1250.00",
    open_amount: str | None = None,
    currency: str = "USD",
    status: str = "open",
    **fields: Any,
) -> ErpInvoiceDocument:
    return ErpInvoiceDocument(
        invoice_number=number,
        version=version,
        order_number=fields.pop("order_number", f"SO-{number}"),
        po_number=fields.pop("po_number", f"PO-{number}"),
        invoice_date=fields.pop("invoice_date", date(2026, 11, 1)),
        due_date=fields.pop("due_date", date(2026, 12, 1)),
        currency=currency,
        total=Decimal(total),
        open_amount=Decimal(open_amount if open_amount is not None else total),
        status=status,  # type: ignore[arg-type]
        billing_country=fields.pop("billing_country", "US"),
        **fields,
    )


def upserted(account: str, number: str, version: int = 1, **kw: Any) -> ErpInvoiceUpserted:
    return ErpInvoiceUpserted.originating(
        producer="erp", account_id=account, payload=document(account, number, version, **kw)
    )


@dataclass
class InvoiceSyncParts:
    """invoice-sync's consumer, worker and relay (what `invoice-sync` runs, minus HTTP)."""

    database_url: str
    bootstrap: str
    topics: TopicRegistry
    provider_url: str
    relay_enabled: bool = True
    pool: asyncpg.Pool | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def start(self) -> InvoiceSyncParts:
        self.pool = await open_pool(self.database_url, SCHEMA, install=install)
        self.stopping = asyncio.Event()
        self.provider = HttpProvider(self.provider_url, timeout_s=5.0)
        self.relay = OutboxRelay(self.pool, self.bootstrap, service=SERVICE, idle_poll_s=0.1)
        self.worker = RegistrationWorker(
            UnitsOfWork(self.pool, self.topics),
            self.provider,
            on_commit=self.relay.wake,
            batch_size=200,
            idle_poll_s=0.1,
        )

        def committed() -> None:
            self.relay.wake()
            self.worker.wake()

        self.consumer = TransactionalConsumer(
            service=SERVICE,
            name="erp-invoices",
            registry=self.topics,
            topics=[self.topics.erp_invoices],
            pool=self.pool,
            bootstrap=self.bootstrap,
            handle=handle_batch,
            on_commit=committed,
            batch_size=200,
        )
        self.tasks = [
            asyncio.create_task(self.consumer.run()),
            asyncio.create_task(self.worker.run(self.stopping)),
        ]
        if self.relay_enabled:
            self.tasks.append(asyncio.create_task(self.relay.run(self.stopping)))
        return self

    async def stop(self) -> None:
        self.consumer.stop()
        self.stopping.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks, return_exceptions=True), 30)
        await self.provider.aclose()
        assert self.pool is not None
        await self.pool.close()

    async def crash(self) -> None:
        """Stop abruptly: tasks cancelled wherever they are, nothing drained."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.provider.aclose()
        assert self.pool is not None
        self.pool.terminate()


async def invoice_events(bootstrap: str, topics: TopicRegistry) -> list[Envelope]:
    return [
        INVOICE_EVENTS.validate_json(r.value or b"") for r in await read_all(bootstrap, topics.invoices.name)
    ]


def of_type(events: list[Envelope], type_: str, number: str | None = None) -> list[Any]:
    return [e for e in events if e.type == type_ and (number is None or e.payload.invoice_number == number)]


async def provider_invoices(base_url: str) -> dict[tuple[str, str], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base_url) as client:
        rows = (await client.get("/sandbox/invoices")).json()
    return {(r["account_id"], r["invoice_number"]): r for r in rows}


async def sandbox(base_url: str, method: str, path: str, body: Any = None) -> Any:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.request(method, path, json=body)
        response.raise_for_status()
        return response.json()


def headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def raw(message: Envelope, **payload_changes: Any) -> tuple[bytes, bytes]:
    """A message as JSON with payload fields replaced or removed (None), for bad documents."""
    body = json.loads(message.model_dump_json())
    for key, value in payload_changes.items():
        if value is None:
            body["payload"].pop(key, None)
        else:
            body["payload"][key] = value
    return message.key(), json.dumps(body).encode()
