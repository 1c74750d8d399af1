"""What every figure needs: a scratch database and topic prefix, services as OS
processes, and a meter over the processes that do the work."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from aiokafka.admin import AIOKafkaAdminClient
from anchors import until_writable
from procs import Group, Meter, PostgresPids, kafka_pid

from payments_contracts.topics import TopicRegistry
from payments_platform.kafka import client_options
from payments_platform.topic_admin import ensure_topics

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SANDBOX_MERCHANT = "bench-merchant"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Scratch:
    """One run's own database and topic prefix on the shared broker and server."""

    bootstrap: str
    admin_dsn: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    partitions: int | None = None
    extra_topics: list[str] = field(default_factory=list)  # the anchors' own, deleted with the rest

    @property
    def database(self) -> str:
        return f"bench_{self.tag}"

    @property
    def dsn(self) -> str:
        return f"{self.admin_dsn.rpartition('/')[0]}/{self.database}"

    async def __aenter__(self) -> Scratch:
        self.registry = TopicRegistry(prefix=f"bench{self.tag}.", partitions=self.partitions)
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        await ensure_topics(self.bootstrap, self.registry)
        await until_writable(self.bootstrap, {t: n for t, (n, _) in self.registry.desired().items()})
        self.logs = Path(tempfile.gettempdir()) / "payments-bench" / self.tag
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    async def new_database(self, suffix: str) -> str:
        """Another empty database on the same server (a fresh read model, say)."""
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}_{suffix}"')
        finally:
            await admin.close()
        self._extra = [*getattr(self, "_extra", []), f"{self.database}_{suffix}"]
        return f"{self.admin_dsn.rpartition('/')[0]}/{self.database}_{suffix}"

    async def __aexit__(self, *exc: object) -> None:
        admin = await asyncpg.connect(self.admin_dsn)
        try:
            for name in [self.database, *getattr(self, "_extra", [])]:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        client = AIOKafkaAdminClient(**client_options(self.bootstrap))
        await client.start()
        try:
            await client.delete_topics([*self.registry.desired(), *self.extra_topics])
        except Exception as exc:  # cleanup only; the run's figures stand
            print(f"  topic cleanup: {exc!r}", flush=True)
        finally:
            await client.close()


def merchant_file(directory: Path, accounts: list[str]) -> Path:
    path = directory / "merchants.json"
    path.write_text(json.dumps({"merchants": {SANDBOX_MERCHANT: {"accounts": accounts}}}))
    return path


class Services:
    """Services as OS processes (the installed entry points), each on its own port."""

    def __init__(self, scratch: Scratch, dsn: str | None = None, extra: dict[str, str] | None = None) -> None:
        self.scratch = scratch
        self.ports = {name: free_port() for name in ("sandbox-provider", "payment-intake", "invoice-sync")}
        self.env = {
            **os.environ,
            "PAYMENTS_SANDBOX": "1",
            "PAYMENTS_KAFKA_BOOTSTRAP": scratch.bootstrap,
            "PAYMENTS_DATABASE_URL": dsn or scratch.dsn,
            "PAYMENTS_TOPIC_PREFIX": scratch.registry.prefix,
            "PAYMENTS_LOG_LEVEL": "WARNING",
            "PAYMENTS_PROVIDER_URL": f"http://127.0.0.1:{self.ports['sandbox-provider']}",
            "PAYMENTS_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{self.ports['payment-intake']}/callbacks/provider",
            "SANDBOX_PROVIDER_PORT": str(self.ports["sandbox-provider"]),
            "SANDBOX_PROVIDER_PUBLIC_URL": f"http://127.0.0.1:{self.ports['sandbox-provider']}",
            "SANDBOX_PROVIDER_WEBHOOK_URL": f"http://127.0.0.1:{self.ports['payment-intake']}/callbacks/provider",
            "INVOICE_SYNC_HTTP_PORT": str(self.ports["invoice-sync"]),
            "PAYMENT_INTAKE_HTTP_PORT": str(self.ports["payment-intake"]),
            **(extra or {}),
        }
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(
        self, name: str, *, key: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        key = key or name
        log = (self.scratch.logs / f"{key}.log").open("ab")
        process = subprocess.Popen(
            [str(BIN / name)], env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        self.running[key] = process
        profiles = os.environ.get("BENCH_PROFILE_DIR")
        if profiles and name != "sandbox-provider":
            # A profiling run, not one to quote: py-spy's sampling costs the service CPU.
            # It ends by itself when the service exits.
            out = Path(profiles) / f"{key}-{process.pid}.txt"
            subprocess.Popen(
                [
                    *("py-spy", "record", "--pid", str(process.pid), "--rate", "100", "--format", "raw"),
                    *("--nonblocking", "--output", str(out)),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return process

    async def ready(self, key: str, port: int, timeout: float = 90) -> None:
        path = "/health/live" if key == "sandbox-provider" else "/health/ready"
        deadline = time.monotonic() + timeout
        process = self.running[key]
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    log = (self.scratch.logs / f"{key}.log").read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{key} exited with {process.returncode}:\n{log}")
                try:
                    if (await client.get(f"http://127.0.0.1:{port}{path}")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{key} not ready after {timeout}s")

    def stop(self, keys: Iterable[str] | None = None) -> None:
        keys = list(self.running) if keys is None else list(keys)
        for key in keys:
            if self.running[key].poll() is None:
                self.running[key].send_signal(signal.SIGTERM)
        for key in keys:
            process = self.running.pop(key)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


async def meter(
    scratch: Scratch,
    service: list[int],
    provider: list[int] | None = None,
    database: str | None = None,
    *,
    start: bool = True,
) -> tuple[Meter, PostgresPids]:
    """A meter over the service's processes, the PostgreSQL backends of the run's database
    with the postmaster and its background children, the broker, the provider and this
    load generator; started."""
    postgres = PostgresPids(scratch.admin_dsn, database or scratch.database)
    await postgres.start()
    broker = kafka_pid(scratch.bootstrap)
    groups = [
        Group("service", lambda: service),
        Group("postgres", lambda: postgres.backends | postgres.background),
        Group("kafka", lambda: [broker] if broker else []),
        Group("provider", lambda: provider or []),
        Group("loadgen", lambda: [os.getpid()]),
    ]
    m = Meter(groups)
    if start:  # else the caller starts it at the exact moment (Meter.start is synchronous)
        m.start()
    return m, postgres


async def committed(conn: asyncpg.Connection, topics: list[str]) -> int:
    """Records a service has consumed and committed: the sum of its stored next offsets
    (`consumer_offsets`, written in the transaction that applies them; the run's topics
    are new, so they start at 0), over whichever schema holds them."""
    schemas = await conn.fetch(
        "SELECT table_schema FROM information_schema.tables WHERE table_name = 'consumer_offsets'"
    )
    best = 0
    for row in schemas:
        done = await conn.fetch(
            f'SELECT consumer, sum(next_offset) AS n FROM "{row[0]}".consumer_offsets '
            "WHERE topic = ANY($1) GROUP BY consumer",
            topics,
        )
        best = max([best, *(int(r["n"]) for r in done)])
    return best
