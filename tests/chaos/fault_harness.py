"""The whole system as OS processes on a Kafka and a PostgreSQL of its own, so that
both can be crashed: two instances of every service, a load generator that remembers
every input, and the checks that compare inputs with outputs by id.

`PAYMENTS_CHAOS=full` (`make chaos`) runs the full load and at least three kills of
each kind; otherwise (inside `make test`) a short version with one of each.

`PAYMENTS_CHAOS_BROKERS=3` (`make chaos-cluster`) runs it on the production topology:
three KRaft brokers (RF 3, min ISR 2) and a streaming replica the read API reads from;
the broker faults are then a `kill -9` of each broker in turn (the active controller
first) and a rolling restart of all three, and the replica is killed too.
`PAYMENTS_CHAOS_SECURE=1` puts every client on SASL_SSL with ACLs, one principal each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from message_builders import guest

from infra import load_runtime
from payments_contracts import Envelope
from payments_contracts.erp import (
    ErpAccountSnapshot,
    ErpAccountSnapshotPayload,
    ErpInvoiceCancelled,
    ErpInvoiceCancelledPayload,
    ErpInvoiceDocument,
    ErpInvoiceUpserted,
    ErpPostedPayment,
)
from payments_contracts.payments import PayInvoice, PayInvoicePayload
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from processes import Process
from system import DEFAULT_SECRET, free_port

FULL = os.environ.get("PAYMENTS_CHAOS") == "full"
BROKERS = int(os.environ.get("PAYMENTS_CHAOS_BROKERS", "1"))
CLUSTER = BROKERS > 1
SECURE = os.environ.get("PAYMENTS_CHAOS_SECURE") == "1"
PROBE_ACCOUNT = "CH-PROBE"
PROBE_MERCHANT = "chaos-merchant"
BIN = Path(sys.executable).parent
SERVICES = ("invoice-sync", "payment-intake", "status-projector")
PORT_ENV = {
    "invoice-sync": "INVOICE_SYNC_HTTP_PORT",
    "payment-intake": "PAYMENT_INTAKE_HTTP_PORT",
    "status-projector": "STATUS_PROJECTOR_HTTP_PORT",
}
SCHEMAS = {
    "invoice-sync": "invoice_sync",
    "payment-intake": "payment_intake",
    "status-projector": "status_projector",
}
ANSWERS = ("payment.requested", "payment.rejected", "payment.cancelled")
ENDINGS = ("payment.succeeded", "payment.failed", "payment.expired", "payment.cancelled")


@dataclass(frozen=True)
class Scale:
    documents: int
    commands: int
    accounts: int
    kills_each: int
    bad_records: int
    seconds: float  # how long the load is spread over

    @classmethod
    def chosen(cls) -> Scale:
        if FULL:
            return cls(
                documents=20_000, commands=5_000, accounts=200, kills_each=3, bad_records=11_300, seconds=150
            )
        return cls(documents=2_000, commands=400, accounts=40, kills_each=1, bad_records=400, seconds=40)


# --------------------------------------------------------------------------- infrastructure


class Infrastructure:
    """Brokers and databases owned by the test, so they can be killed and restarted."""

    def __init__(self, root: Path, prefix: str = "chaos.") -> None:
        runtime = load_runtime()
        self.root = root
        self.cluster: Any = None
        if CLUSTER:
            self.cluster = runtime.KafkaCluster(size=BROKERS, secure=SECURE, topic_prefix=prefix)
            self.cluster.start(root / "kafka")
            self.kafka = self.cluster.nodes[0]
        else:
            self.kafka = runtime.KafkaNode().start(root / "kafka")
        self.postgres = runtime.PostgresNode().start(root / "pg", durable=True)
        # Synchronous, so the failover fault (the primary lost, the standby promoted) may
        # lose no commit; the services' URL names both servers (`dsn`).
        self.replica = self.postgres.start_replica(root / "pg-replica", synchronous=True) if CLUSTER else None
        self._dsn = (
            runtime.failover_dsn(self.postgres, self.replica)
            if self.replica is not None
            else str(self.postgres.dsn)
        )
        self.retired: list[Any] = []  # a primary lost to a failover, removed at the end

    @property
    def bootstrap(self) -> str:
        return str(self.cluster.bootstrap if self.cluster is not None else self.kafka.bootstrap)

    @property
    def dsn(self) -> str:
        """The services' database URL: on a cluster, both servers, whichever takes writes."""
        return self._dsn

    def fail_over(self) -> None:
        """The standby is the primary from now on; the lost primary is not used again."""
        assert self.replica is not None
        self.retired.append(self.postgres)
        self.postgres, self.replica = self.replica, None

    def env(self, principal: str = "admin") -> dict[str, str]:
        """PAYMENTS_KAFKA_* for a client of ours, as `principal` on a secured cluster."""
        if self.cluster is None:
            return {"PAYMENTS_KAFKA_BOOTSTRAP": self.bootstrap}
        return dict(self.cluster.client_env(principal))

    def options(self, principal: str = "admin") -> dict[str, Any]:
        """aiokafka keyword arguments for the test's own clients."""
        from payments_portal_client import KafkaSecurity

        env = self.env(principal)
        if env.get("PAYMENTS_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT":
            return {}
        return KafkaSecurity(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username=env["PAYMENTS_KAFKA_SASL_USERNAME"],
            sasl_password=env["PAYMENTS_KAFKA_SASL_PASSWORD"],
            ssl_cafile=env["PAYMENTS_KAFKA_SSL_CAFILE"],
        ).options()

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self.kafka.stop()
        for db in (self.replica, self.postgres, *self.retired):
            if db is not None:
                db.thaw()
                db.stop()
                db.remove_data()
        shutil.rmtree(self.root / "kafka", ignore_errors=True)


@dataclass
class Instance:
    service: str
    index: int
    port: int
    env: dict[str, str]
    log: Path
    launched: Process | None = None
    last_checks: Any = None

    @property
    def name(self) -> str:
        return f"{self.service}#{self.index}"

    def start(self) -> None:
        self.launched = Process([str(BIN / self.service)], self.env, self.log).start()

    def kill(self) -> None:
        if self.launched is not None:
            self.launched.kill()

    def stop(self) -> int | None:
        return None if self.launched is None else self.launched.stop(timeout=45)


STRIPE_ACCOUNTS = 2  # of every 5 accounts (CH-0000, CH-0002, CH-0005, CH-0007, ...)


def on_stripe(account_index: int) -> bool:
    return account_index % 5 in (0, 2)


def chaos_merchant_file(directory: Path, accounts: int = 200) -> Path:
    """Two fifths of the load's accounts with a merchant on the Stripe connector (the
    sandbox's Stripe mode), the rest on the sandbox's own API by the default policy, and a
    merchant owning the probe account, so the test reads the read API as a portal would
    (its demo key)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "merchants.json"
    stripe_accounts = [f"CH-{a:04d}" for a in range(accounts) if on_stripe(a)]
    path.write_text(
        json.dumps(
            {
                "default": "full-payment-portal",
                "merchants": {
                    PROBE_MERCHANT: {"accounts": [PROBE_ACCOUNT]},
                    "chaos-stripe": {"accounts": stripe_accounts, "provider": "stripe"},
                },
            }
        )
    )
    return path


class Fleet:
    """Two instances of each service in their consumer groups, and the sandbox provider."""

    def __init__(self, infra: Infrastructure, registry: TopicRegistry, logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.logs = logs
        self.provider_port = free_port()
        self.instances = [
            Instance(service, i, free_port(), {}, logs / f"{service}-{i}.log")
            for service in SERVICES
            for i in (0, 1)
        ]
        webhook = f"http://127.0.0.1:{self.instances[2].port}/callbacks/provider"  # payment-intake#0
        self.infra = infra
        self.base_env = {
            **os.environ,
            **infra.env(),
            "PAYMENTS_DATABASE_URL": infra.dsn,
            "PAYMENTS_TOPIC_PREFIX": registry.prefix,
            "PAYMENTS_WEBHOOK_SECRET": DEFAULT_SECRET,
            "PAYMENTS_SANDBOX": "1",
            "PAYMENTS_MERCHANT_CONFIG": str(chaos_merchant_file(logs)),
            "PAYMENTS_PROVIDER_URL": self.provider_url,
            "PAYMENTS_PROVIDER_WEBHOOK_URL": webhook,
            "SANDBOX_PROVIDER_WEBHOOK_URL": webhook,
            "PAYMENTS_STRIPE_API_BASE": f"{self.provider_url}/stripe",
            "SANDBOX_PROVIDER_STRIPE_WEBHOOK_URL": webhook.replace(
                "/callbacks/provider", "/callbacks/stripe"
            ),
            "SANDBOX_PROVIDER_PORT": str(self.provider_port),
            "SANDBOX_PROVIDER_PUBLIC_URL": self.provider_url,
            "PAYMENTS_LOG_LEVEL": "INFO",
            "PAYMENT_INTAKE_CHECKOUT_LEASE_S": "3",
            # The Standard Webhooks schedule (5 s, 5 min, 30 min, ...) compressed, and status
            # sync after seconds: a webhook lost while payment-intake#0 is down is resolved
            # within the test's time.
            "SANDBOX_PROVIDER_WEBHOOK_TIME_SCALE": "0.01",
            "PAYMENT_INTAKE_STATUS_SYNC_AFTER_S": "5",
        }
        for instance in self.instances:
            instance.env = {
                **self.base_env,
                **infra.env(instance.service),
                **(
                    {"PAYMENTS_READ_DATABASE_URL": str(infra.replica.dsn)}
                    if infra.replica is not None and instance.service == "status-projector"
                    else {}
                ),
                PORT_ENV[instance.service]: str(instance.port),
                # Static membership, as the Helm chart runs it: a restarted replica takes
                # its partitions back without a rebalance.
                "PAYMENTS_INSTANCE_ID": f"{instance.service}-{instance.index}",
            }
        self.provider = Instance(
            "sandbox-provider", 0, self.provider_port, self.base_env, logs / "sandbox-provider.log"
        )

    @property
    def provider_url(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}"

    def start(self) -> None:
        self.provider.start()
        for instance in self.instances:
            instance.start()

    async def all_ready(self, http: httpx.AsyncClient) -> bool:
        answers = await asyncio.gather(*(_ready(http, i) for i in self.instances))
        return all(answers)

    def stop(self) -> dict[str, int | None]:
        codes = {i.name: i.stop() for i in self.instances}
        self.provider.stop()
        return codes

    def tail(self, lines: int = 15) -> str:
        parts = [f"{i.name}: {i.last_checks}" for i in self.instances]
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)


async def _ready(http: httpx.AsyncClient, instance: Instance) -> bool:
    """Ready to do its work; a standby outbox relay (another instance publishes) is fine."""
    try:
        answer = await http.get(f"http://127.0.0.1:{instance.port}/health/ready", timeout=2)
        checks = answer.json().get("checks", {})
    except (httpx.HTTPError, ValueError) as exc:
        instance.last_checks = repr(exc)
        return False
    instance.last_checks = checks
    return bool(checks) and all(ok for name, ok in checks.items() if name != "outbox_relay")


# --------------------------------------------------------------------------- load


@dataclass
class Invoice:
    account: str
    number: str
    version: int
    total: Decimal
    open_amount: Decimal
    po: str
    posted: list[ErpPostedPayment] = field(default_factory=list)
    cancelled: bool = False

    def document(self) -> ErpInvoiceDocument:
        return ErpInvoiceDocument(
            invoice_number=self.number,
            version=self.version,
            order_number=f"SO-{self.number}",
            po_number=self.po,
            invoice_date=date(2026, 11, 1),
            due_date=date(2026, 11, 1) + timedelta(days=30),
            currency="USD",
            total=self.total,
            open_amount=self.open_amount,
            billing_country="US",
            posted_payments=list(self.posted),
        )


@dataclass
class Load:
    """Every input the test sent, by id, and how often it was delivered."""

    registry: TopicRegistry
    rng: random.Random
    documents: list[Envelope] = field(default_factory=list)  # creates, changes, balances, cancels
    snapshots: list[Envelope] = field(default_factory=list)
    commands: list[PayInvoice] = field(default_factory=list)
    deliveries: Counter[uuid.UUID] = field(default_factory=Counter)
    invoices: list[Invoice] = field(default_factory=list)

    def plan(self, scale: Scale) -> list[list[Envelope]]:
        """The ERP stream in rounds: each round touches an invoice at most once."""
        accounts = [f"CH-{a:04d}" for a in range(scale.accounts)]
        creates = scale.documents * 45 // 100
        rounds: list[list[Envelope]] = []
        current: list[Envelope] = []
        for n in range(creates):
            inv = Invoice(
                accounts[n % len(accounts)], f"INV-{n:06d}", 1, Decimal("1000.00"), Decimal("1000.00"), "PO-1"
            )
            self.invoices.append(inv)
            current.append(
                ErpInvoiceUpserted.originating(producer="erp", account_id=inv.account, payload=inv.document())
            )
        rounds.append(current)
        remaining = scale.documents - creates
        while remaining > 0:
            current = []
            for inv in self.rng.sample(self.invoices, min(len(self.invoices), remaining, 2000)):
                if inv.cancelled:
                    continue
                inv.version += 1
                roll = self.rng.random()
                if roll < 0.05:
                    inv.cancelled = True
                    current.append(
                        ErpInvoiceCancelled.originating(
                            producer="erp",
                            account_id=inv.account,
                            payload=ErpInvoiceCancelledPayload(
                                invoice_number=inv.number, version=inv.version
                            ),
                        )
                    )
                elif roll < 0.5 and inv.open_amount > Decimal("100.00"):
                    amount = Decimal("100.00")
                    inv.open_amount -= amount
                    inv.posted.append(
                        ErpPostedPayment(reference=f"ERP-{uuid.uuid4().hex[:10]}", amount=amount)
                    )
                    current.append(
                        ErpInvoiceUpserted.originating(
                            producer="erp", account_id=inv.account, payload=inv.document()
                        )
                    )
                else:
                    inv.po = f"PO-{inv.version}"
                    current.append(
                        ErpInvoiceUpserted.originating(
                            producer="erp", account_id=inv.account, payload=inv.document()
                        )
                    )
            remaining -= len(current)
            rounds.append(current)
        for index, account in enumerate(accounts[: max(2, len(accounts) // 10)]):
            open_docs = [i.document() for i in self.invoices if i.account == account and not i.cancelled]
            self.snapshots.append(
                ErpAccountSnapshot.originating(
                    producer="erp",
                    account_id=account,
                    payload=ErpAccountSnapshotPayload(as_of=_now(), sequence=index + 1, invoices=open_docs),
                )
            )
        for r in rounds:
            self.documents.extend(r)
        return rounds

    def pay_command(self) -> PayInvoice:
        inv = self.rng.choice(self.invoices[: max(1, len(self.invoices) // 2)])
        command = PayInvoice.originating(
            producer="portal",
            account_id=inv.account,
            payload=PayInvoicePayload(
                idempotency_key=str(uuid.uuid4()), invoice_number=inv.number, amount=None, method=guest()
            ),
        )
        self.commands.append(command)
        return command


def _now() -> Any:
    from payments_contracts import utc_now

    return utc_now()


class Sender:
    """An idempotent producer that counts deliveries of each envelope."""

    def __init__(self, bootstrap: str, load: Load, **options: Any) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            **options,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            request_timeout_ms=120_000,
        )
        self._load = load

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, messages: list[Envelope]) -> None:
        futures = []
        for m in messages:
            topic = self._load.registry.for_message(m).name
            futures.append(await self._producer.send(topic, m.model_dump_json().encode(), key=m.key()))
            self._load.deliveries[m.event_id] += 1
        await asyncio.gather(*futures)

    async def send_raw(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[int, int] | None:
        """A raw record; its (partition, offset), or None when the broker refuses it."""
        try:
            meta = await self._producer.send_and_wait(topic, value, key=key)
        except Exception:
            return None
        return meta.partition, meta.offset


# --------------------------------------------------------------------------- reading back


async def read_topic(bootstrap: str, topic: str, **options: Any) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=2**20, **options
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 120
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for part in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()


def by_cause(records: list[Any], decoder: Any) -> dict[uuid.UUID, dict[str, set[uuid.UUID]]]:
    """cause event id -> type -> distinct event ids it caused (re-sent copies count once)."""
    found: dict[uuid.UUID, dict[str, set[uuid.UUID]]] = defaultdict(lambda: defaultdict(set))
    for record in records:
        message = decode(decoder, record.value)
        if message is not None and message.causation_id is not None:
            found[message.causation_id][message.type].add(message.event_id)
    return found


def decode(decoder: Any, value: bytes | None) -> Any:
    """A message of the topic's contract, or None for the flood's bad records."""
    try:
        return decoder.validate_json(value or b"")
    except ValueError:
        return None


async def outbox_depth(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            s: await conn.fetchval(f"SELECT count(*) FROM {schema}.outbox") for s, schema in SCHEMAS.items()
        }
    finally:
        await conn.close()


CONSUMERS = {  # schema, consumer name -> the topics it reads
    ("invoice_sync", "erp-invoices"): ("erp_invoices",),
    ("payment_intake", "intake"): ("invoices", "payments_commands", "payments_callbacks"),
    ("status_projector", "projection_v1"): ("invoices", "payments_events"),
}


async def caught_up(bootstrap: str, dsn: str, registry: TopicRegistry, **options: Any) -> bool:
    """Every consumer's stored offsets at the end of every partition it reads."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **options)
    await consumer.start()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            for (schema, name), attrs in CONSUMERS.items():
                topics = [getattr(registry, a) for a in attrs]
                partitions = [TopicPartition(t.name, p) for t in topics for p in range(t.partitions)]
                ends = await consumer.end_offsets(partitions)
                rows = await conn.fetch(
                    f"SELECT topic, partition, next_offset FROM {schema}.consumer_offsets"
                    " WHERE consumer = $1",
                    name,
                )
                stored = {TopicPartition(r["topic"], r["partition"]): r["next_offset"] for r in rows}
                if any(stored.get(tp, 0) < end for tp, end in ends.items()):
                    return False
            return True
        finally:
            await conn.close()
    except Exception:
        return False
    finally:
        await consumer.stop()


async def read_model_has(dsn: str, account: str, number: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception:
        return False
    try:
        version = await conn.fetchval("SELECT version FROM status_projector.active_projection")
        return bool(
            await conn.fetchval(
                f"SELECT count(*) FROM status_projector.invoices_v{version} "
                "WHERE account_id = $1 AND invoice_number = $2",
                account,
                number,
            )
        )
    except Exception:
        return False
    finally:
        await conn.close()


async def read_model_rows(dsn: str, version: int) -> dict[str, list[dict[str, Any]]]:
    conn = await asyncpg.connect(dsn)
    try:
        s = "status_projector"
        invoices = await conn.fetch(
            f"SELECT * FROM {s}.invoices_v{version} ORDER BY account_id, invoice_number"
        )
        payments = await conn.fetch(f"SELECT * FROM {s}.payments_v{version} ORDER BY payment_id")
        parked = await conn.fetch(f"SELECT * FROM {s}.parked_v{version} ORDER BY event_id")
    finally:
        await conn.close()
    return {
        "invoices": [dict(r) for r in invoices],
        "payments": [dict(r) for r in payments],
        "parked": [{k: v for k, v in dict(r).items() if k != "parked_at"} for r in parked],
    }


def differing(live: list[dict[str, Any]], rebuilt: list[dict[str, Any]], key: tuple[str, ...]) -> int:
    a = {tuple(r[k] for k in key): r for r in live}
    b = {tuple(r[k] for k in key): r for r in rebuilt}
    return sum(1 for k in a.keys() | b.keys() if a.get(k) != b.get(k))


# --------------------------------------------------------------------------- report


@dataclass
class Kill:
    kind: str
    target: str
    at: float
    restart_s: float | None = None  # the broker's or database's own start-up after the kill
    recovery_s: float | None = None
    ended: float | None = None  # when recovery was seen
    document_wait_s: float | None = None  # longest a probe document waited for the read model
    pauses: dict[str, float] = field(default_factory=dict)  # service -> longest consumption pause
    baseline: dict[str, float] = field(default_factory=dict)  # the same in the 30 s before the fault
    # Where a fault is several (a rolling restart: each broker's stop and start), the
    # stretches measured; else the whole fault until recovery.
    windows: list[tuple[float, float]] = field(default_factory=list)


class Probe:
    """A steady trickle of ERP documents (4 a second, one account) and, beside it, when each
    reaches the read model and when each service's stored offsets last moved. Every service
    has input all the time (invoice-sync the documents, the others the invoice events they
    cause), so a stretch without progress is a pause of its consumption, or of the ones
    upstream of it."""

    def __init__(self, infra: Infrastructure, registry: TopicRegistry, interval_s: float = 0.25) -> None:
        self._infra = infra
        self._registry = registry
        self._interval_s = interval_s
        self.sent: dict[str, float] = {}  # invoice number -> when sent
        self.arrived: dict[str, float] = {}
        self.progress: dict[str, list[tuple[float, int]]] = {s: [] for s in SCHEMAS}
        self.reads: Counter[int] = Counter()  # read-API status codes while faults run
        self.slowest_read_s = 0.0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self, read_api: str) -> None:
        await asyncio.gather(self._send(), self._watch(), self._sample(), self._read(read_api))

    async def _send(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._infra.bootstrap,
            **self._infra.options("erp"),
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=120_000,
        )
        await producer.start()
        pending: set[asyncio.Future[Any]] = set()
        try:
            n = 0
            while not self._stop.is_set():
                number = f"PRB-{n:06d}"
                message = probe_document(number)
                self.sent[number] = time.monotonic()
                future = await producer.send(
                    self._registry.erp_invoices.name, message.model_dump_json().encode(), key=message.key()
                )
                pending.add(future)
                future.add_done_callback(pending.discard)
                n += 1
                await asyncio.sleep(self._interval_s)
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await producer.stop()

    async def _watch(self) -> None:
        while not self._stop.is_set() or len(self.arrived) < len(self.sent):
            waiting = [n for n in self.sent if n not in self.arrived]
            if waiting:
                with contextlib.suppress(Exception):
                    conn = await asyncpg.connect(self._infra.dsn, timeout=2)
                    try:
                        version = await conn.fetchval(
                            "SELECT version FROM status_projector.active_projection"
                        )
                        found = await conn.fetch(
                            f"SELECT invoice_number FROM status_projector.invoices_v{version} "
                            "WHERE account_id = $1 AND invoice_number = ANY($2::text[])",
                            PROBE_ACCOUNT,
                            waiting,
                            timeout=2,
                        )
                    finally:
                        await conn.close(timeout=2)
                    now = time.monotonic()
                    for row in found:
                        self.arrived.setdefault(row["invoice_number"], now)
            if self._stop.is_set() and time.monotonic() > self._stopped_at() + 120:
                return
            await asyncio.sleep(0.1)

    def _stopped_at(self) -> float:
        if not hasattr(self, "_stop_time"):
            self._stop_time = time.monotonic()
        return self._stop_time

    async def _sample(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                conn = await asyncpg.connect(self._infra.dsn, timeout=1)
                try:
                    now = time.monotonic()
                    for service, schema in SCHEMAS.items():
                        total = await conn.fetchval(
                            f"SELECT coalesce(sum(next_offset), 0) FROM {schema}.consumer_offsets", timeout=1
                        )
                        self.progress[service].append((now, int(total)))
                finally:
                    await conn.close(timeout=1)
            await asyncio.sleep(0.2)

    async def _read(self, read_api: str) -> None:
        headers = {"authorization": f"Bearer {demo_api_key(PROBE_MERCHANT)}"}
        async with httpx.AsyncClient(base_url=read_api, headers=headers, timeout=10) as http:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    answer = await http.get(f"/v1/accounts/{PROBE_ACCOUNT}/summary")
                    if answer.status_code == 404 and not self.reads:
                        await asyncio.sleep(0.5)  # no probe document applied yet: nothing to read
                        continue
                    self.reads[answer.status_code] += 1
                except httpx.HTTPError:
                    self.reads[0] += 1  # no answer (the instance itself restarting)
                self.slowest_read_s = max(self.slowest_read_s, time.monotonic() - started)
                await asyncio.sleep(0.5)

    def document_wait(self, start: float, end: float) -> float | None:
        """The longest any probe document sent in [start, end] waited to reach the read model
        (one still missing counts until now)."""
        now = time.monotonic()
        waits = [self.arrived.get(n, now) - t for n, t in self.sent.items() if start <= t <= end]
        return max(waits) if waits else None

    def longest_pause(self, service: str, start: float, end: float) -> float:
        """The longest stretch in [start, end] without the service's stored offsets moving."""
        last_move, longest, previous = start, 0.0, None
        for at, total in self.progress[service]:
            if previous is not None and total > previous:
                if at >= start:
                    longest = max(longest, min(at, end) - last_move)
                last_move = max(at, start)
            previous = total
            if at > end:
                break
        return max(longest, min(end, time.monotonic()) - last_move) if last_move < end else longest


def probe_document(number: str) -> ErpInvoiceUpserted:
    return ErpInvoiceUpserted.originating(
        producer="erp",
        account_id=PROBE_ACCOUNT,
        payload=ErpInvoiceDocument(
            invoice_number=number,
            version=1,
            invoice_date=date(2026, 11, 1),
            due_date=date(2026, 12, 1),
            currency="USD",
            total=Decimal("10.00"),
            open_amount=Decimal("10.00"),
            billing_country="US",
        ),
    )


def table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name.ljust(width)}  {value}" for name, value in rows)
