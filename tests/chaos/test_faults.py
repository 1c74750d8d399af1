"""Nothing lost, nothing doubled, nothing stuck: the whole system under kill -9 of service
instances, of the broker and of PostgreSQL, with a flood of bad input.

Checked by id at the end: every ERP document caused its canonical event exactly once,
every pay command got exactly one answer, every payment the provider took is reported
once, every outbox drained, every bad record is on its dead-letter topic, and the live
read model equals a clean rebuild row for row. One table of figures is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fault_harness import (
    ANSWERS,
    BIN,
    BROKERS,
    CLUSTER,
    ENDINGS,
    FULL,
    SCHEMAS,
    SECURE,
    Fleet,
    Infrastructure,
    Kill,
    Load,
    Probe,
    Scale,
    Sender,
    by_cause,
    caught_up,
    decode,
    differing,
    outbox_depth,
    read_model_has,
    read_model_rows,
    read_topic,
    table,
)

from payments_contracts.erp import ErpInvoiceDocument, ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600 if FULL else 900)]

SEED = 8
T0 = time.monotonic()
LOAD_AT_START = os.getloadavg()


def _fault_plan(scale: Scale) -> list[str]:
    """The faults, interleaved. On one broker: service and broker kills, and PostgreSQL
    crashed, shut down fast and frozen. On a cluster, besides: a kill -9 of each broker in
    turn (the active controller first), a rolling restart of all of them, the replica
    killed, and last a failover: the primary killed and its synchronous standby promoted."""
    kinds = {
        "service": scale.kills_each,
        "postgres": scale.kills_each,
        "postgres-fast": scale.kills_each,
        "postgres-freeze": scale.kills_each,
    }
    if CLUSTER:
        kinds |= {"broker": max(3, scale.kills_each), "rolling": 1, "replica": scale.kills_each}
    else:
        kinds["broker"] = scale.kills_each
    plan: list[str] = []
    while any(kinds.values()):
        for kind in list(kinds):
            if kinds[kind]:
                plan.append(kind)
                kinds[kind] -= 1
    # Last: from then on there is no standby to lose or to fail over to.
    return [*plan, "postgres-failover"] if CLUSTER else plan


def _measure(kill: Kill, probe: Probe) -> None:
    windows = kill.windows or [(kill.at, (kill.ended or time.monotonic()) + 1.0)]
    waits = [w for w in (probe.document_wait(a, b) for a, b in windows) if w is not None]
    kill.document_wait_s = round(max(waits), 1) if waits else None
    kill.pauses = {svc: round(max(probe.longest_pause(svc, a, b) for a, b in windows), 1) for svc in SCHEMAS}
    # What the machine and the load cost without a fault, to read the figures against.
    kill.baseline = {svc: round(probe.longest_pause(svc, kill.at - 30, kill.at), 1) for svc in SCHEMAS}


def _say(what: str) -> None:
    print(f"[chaos {time.monotonic() - T0:7.1f}s] {what}", flush=True)


async def test_no_effect_lost_or_doubled_under_kills_of_services_broker_and_database(tmp_path: Path) -> None:
    scale = Scale.chosen()
    rng = random.Random(SEED)
    _dump_tasks_on_sigusr1()
    infra = Infrastructure(tmp_path / "infra")
    registry = TopicRegistry(prefix="chaos.")
    fleet = Fleet(infra, registry, tmp_path / "logs")
    http = httpx.AsyncClient(timeout=5)
    load = Load(registry, rng)
    admin = infra.options("admin")
    sender = Sender(infra.bootstrap, load, **admin)
    probe = Probe(infra, registry)
    kills: list[Kill] = []
    bad: dict[str, list[tuple[int, int]]] = {}
    refused_at_the_door = 0
    try:
        if not SECURE:  # else each service applies the registry as its own principal at start
            await ensure_topics(infra.bootstrap, registry)
        fleet.start()
        await _until(lambda: fleet.all_ready(http), 120, "every instance ready", fleet)
        _say(f"fleet ready at {datetime.now(UTC).isoformat()}")
        await sender.start()
        rounds = load.plan(scale)
        started = time.monotonic()

        async def erp() -> None:
            pause = scale.seconds * 0.6 / max(1, len(rounds))
            for n, r in enumerate(rounds):
                _say(f"ERP round {n}: {len(r)} documents")
                for i in range(0, len(r), 500):
                    chunk = r[i : i + 500]
                    await sender.send(chunk)
                    await asyncio.sleep(pause * len(chunk) / len(r))
            await sender.send(load.snapshots)

        async def portal() -> None:
            await asyncio.sleep(scale.seconds * 0.15)  # after the first invoices are registered
            gap = scale.seconds * 0.7 / scale.commands
            for _ in range(scale.commands):
                command = load.pay_command()
                await sender.send([command])
                if rng.random() < 0.2:  # a fifth delivered twice
                    await sender.send([command])
                await asyncio.sleep(gap)

        decided: dict[str, str] = {}  # checkout id -> the payer's one decision, retried until taken

        async def payers() -> None:
            while True:
                try:
                    listed = (await http.get(f"{fleet.provider_url}/sandbox/checkouts")).json()
                except (httpx.HTTPError, ValueError):
                    listed = []
                for checkout in listed:
                    if checkout["status"] == "open":
                        action = decided.setdefault(
                            checkout["checkout_id"], "complete" if rng.random() < 0.7 else "fail"
                        )
                        with contextlib.suppress(httpx.HTTPError):
                            await http.post(
                                f"{fleet.provider_url}/sandbox/checkouts/{checkout['checkout_id']}/{action}"
                            )
                await asyncio.sleep(0.2)

        async def flood() -> None:
            nonlocal refused_at_the_door
            kinds = _bad_records()
            inputs = [t.name for t in registry.all]
            for n in range(scale.bad_records):
                topic = inputs[n % len(inputs)]
                key, value = kinds[n % len(kinds)]
                placed = await sender.send_raw(topic, key, value)
                if placed is None:
                    refused_at_the_door += 1
                else:
                    bad.setdefault(topic, []).append(placed)
                if n % 50 == 0:
                    await asyncio.sleep(scale.seconds * 0.5 / max(1, scale.bad_records / 50))

        async def chaos() -> None:
            kinds = _fault_plan(scale)
            gap = scale.seconds * 0.8 / len(kinds)
            for kind in kinds:
                await asyncio.sleep(gap * rng.uniform(0.6, 1.0))
                kill = await _kill(kind, infra, fleet, http, rng, admin)
                _measure(kill, probe)
                kills.append(kill)
                _say(f"{kind}: documents waited up to {kill.document_wait_s}s, pauses {kill.pauses}")

        paying = asyncio.create_task(payers())
        probing = asyncio.create_task(probe.run(f"http://127.0.0.1:{fleet.instances[4].port}"))
        await asyncio.gather(erp(), portal(), flood(), chaos())
        probe.stop()
        load_seconds = time.monotonic() - started
        _say("load sent")

        # Everything the load put in must come out, with no kill in progress.
        await _until(lambda: fleet.all_ready(http), 180, "every instance ready after the load", fleet)
        events = await _until_answered(infra, registry, load, fleet)
        _say("commands answered")
        await _until_settled(infra, registry, fleet)
        _say("payments settled")
        paying.cancel()
        await asyncio.gather(paying, return_exceptions=True)
        await _until(lambda: _drained(infra.dsn), 120, "every outbox drained", fleet)
        await asyncio.wait_for(probing, 180)
        await _until(
            lambda: caught_up(infra.bootstrap, infra.dsn, registry, **admin),
            240,
            "every consumer caught up",
            fleet,
        )
        _say("consumers caught up")
        await _until(lambda: _drained(infra.dsn), 120, "every outbox drained", fleet)
        events = await _payment_events(infra, registry)  # read again: settling happened since
        _say("outboxes drained")

        # Figures, by id.
        invoices_out = by_cause(
            await read_topic(infra.bootstrap, registry.invoices.name, **admin), registry.invoices.decoder
        )
        doc_lost = [d.event_id for d in load.documents if not invoices_out.get(d.event_id)]
        doc_doubled = [c for c, types in invoices_out.items() if any(len(ids) > 1 for ids in types.values())]
        answers = {c.event_id: _answers(events, c.event_id) for c in load.commands}
        cmd_lost = [c for c, a in answers.items() if not a]
        cmd_doubled = [c for c, a in answers.items() if len(a) > 1]
        succeeded = Counter(e.payload.payment_id for e in events.values() if e.type == "payment.succeeded")
        checkouts = (await http.get(f"{fleet.provider_url}/sandbox/checkouts")).json()
        charged = {uuid.UUID(c["payment_id"]) for c in checkouts if c["status"] == "succeeded"}
        through_stripe = {uuid.UUID(c["payment_id"]) for c in checkouts if c.get("provider") == "stripe"}
        # Money taken that the payment must not keep (late, twice, another amount) is refunded.
        refunded = {e.payload.payment_id for e in events.values() if e.type == "payment.refunded"}
        dlq_missing = await _dead_letters_missing(infra, registry, bad)
        probes_lost = [n for n in probe.sent if n not in probe.arrived]

        fleet_codes = fleet.stop()
        _say("fleet stopped")
        rebuild = subprocess.run(
            [str(BIN / "status-projector-ops"), "rebuild", "--no-switch", "--keep", "5"],
            env=fleet.base_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert rebuild.returncode == 0, rebuild.stdout[-3000:] + rebuild.stderr[-3000:]
        live, rebuilt = await read_model_rows(infra.dsn, 1), await read_model_rows(infra.dsn, 2)
        diff_invoices = differing(live["invoices"], rebuilt["invoices"], ("account_id", "invoice_number"))
        diff_payments = differing(live["payments"], rebuilt["payments"], ("payment_id",))
        diff_parked = differing(live["parked"], rebuilt["parked"], ("event_id",))

        by_kind = Counter(k.kind for k in kills)
        recovery = {
            kind: sorted(round(k.recovery_s, 1) for k in kills if k.kind == kind and k.recovery_s is not None)
            for kind in by_kind
        }
        # Each fault: the longest wait of a probe document, and per service the longest
        # pause, with in brackets the longest in the 30 s before the fault (load, machine).
        faults = [
            (
                f"{k.kind} {k.target}",
                f"document waited <= {k.document_wait_s}s; longest pause "
                + ", ".join(f"{svc} {secs}s ({k.baseline.get(svc)})" for svc, secs in k.pauses.items()),
            )
            for k in kills
        ]
        report = table(
            [
                ("scale", "full" if FULL else "short"),
                ("topology", f"{BROKERS} broker(s)" + (", SASL_SSL + ACLs" if SECURE else "")
                 + (", read replica (synchronous; promoted at the end)" if CLUSTER else "")),
                ("load average at the start / end", f"{LOAD_AT_START} / {os.getloadavg()}"),
                ("ERP documents in (snapshots too)", f"{len(load.documents)} (+{len(load.snapshots)})"),
                ("pay commands in (delivered twice)", f"{len(load.commands)} ({sum(1 for c in load.commands if load.deliveries[c.event_id] > 1)})"),  # noqa: E501
                ("bad records in / refused by the broker", f"{sum(len(v) for v in bad.values())} / {refused_at_the_door}"),  # noqa: E501
                ("load seconds", f"{load_seconds:.0f}"),
                ("canonical invoice events out", sum(len(ids) for t in invoices_out.values() for ids in t.values())),  # noqa: E501
                ("payment events out", len(events)),
                ("payments succeeded / refunded / charged by provider", f"{len(succeeded)} / {len(refunded)} / {len(charged)}"),  # noqa: E501
                ("checkouts on the Stripe connector / charged there", f"{len(through_stripe)} / {len(charged & through_stripe)}"),  # noqa: E501
                ("lost: documents / commands / dead letters", f"{len(doc_lost)} / {len(cmd_lost)} / {dlq_missing}"),  # noqa: E501
                ("doubled: documents / commands / payments", f"{len(doc_doubled)} / {len(cmd_doubled)} / {sum(1 for n in succeeded.values() if n > 1)}"),  # noqa: E501
                ("read model rows differing from a rebuild", f"{diff_invoices + diff_payments + diff_parked} of {len(live['invoices'])} invoices, {len(live['payments'])} payments"),  # noqa: E501
                ("faults", dict(by_kind)),
                ("probe documents sent / lost", f"{len(probe.sent)} / {len(probes_lost)}"),
                ("read API answers while faults ran (status: count)", dict(probe.reads)),
                ("slowest read API answer s", round(probe.slowest_read_s, 2)),
                *[(f"recovery s after {kind} kills", recovery[kind]) for kind in sorted(recovery)],
                ("of which broker / database start-up s", [round(k.restart_s, 1) for k in kills if k.restart_s]),  # noqa: E501
                ("exit codes on SIGTERM", fleet_codes),
                *faults,
            ]
        )  # fmt: skip
        print("\nchaos figures\n" + report, flush=True)
        (Path(__file__).resolve().parents[2] / ".artifacts").mkdir(exist_ok=True)
        name = f"chaos-{'full' if FULL else 'short'}{'-cluster' if CLUSTER else ''}.txt"
        (Path(__file__).resolve().parents[2] / ".artifacts" / name).write_text(report + "\n")

        for payment_id in charged ^ (set(succeeded) | refunded):
            at_provider = [c for c in checkouts if c["payment_id"] == str(payment_id)]
            _say(f"payment {payment_id}: provider {at_provider}")
            for e in events.values():
                if getattr(e.payload, "payment_id", None) == payment_id:
                    _say(f"  {e.type} {e.payload.model_dump_json()[:400]}")
        for payment_id in [p for p, n in succeeded.items() if n > 1]:
            _say(f"payment {payment_id} succeeded {succeeded[payment_id]} times; its events:")
            for e in sorted(events.values(), key=lambda e: e.occurred_at):
                if getattr(e.payload, "payment_id", None) == payment_id:
                    _say(f"  {e.occurred_at.isoformat()} {e.type} {e.event_id} caused by {e.causation_id}")
        assert doc_lost == [] and doc_doubled == [], "an ERP document was lost or doubled"
        assert cmd_lost == [] and cmd_doubled == [], "a pay command was unanswered or answered twice"
        assert all(n == 1 for n in succeeded.values()), "a payment succeeded twice"
        assert charged == set(succeeded) | refunded, "what the provider charged differs from what we report"
        assert charged & through_stripe, "no payment went through the Stripe connector"
        assert not set(succeeded) & refunded, "a payment both kept and refunded"
        assert dlq_missing == 0, "a bad record is missing from its dead-letter topic"
        assert diff_invoices == diff_payments == diff_parked == 0, (
            "the live read model differs from a rebuild"
        )
        assert probes_lost == [], "a probe document never reached the read model"
        assert not set(probe.reads) - {200, 503, 0}, f"the read API answered {dict(probe.reads)}"
        assert Counter(_fault_plan(scale)) == by_kind
        assert all(code == 0 for code in fleet_codes.values()), f"unclean exits {fleet_codes}"
        assert len(succeeded) > 0 and len(load.commands) == scale.commands
    finally:
        probe.stop()
        await http.aclose()
        await sender.stop()
        fleet.stop()
        infra.stop()


def _dump_tasks_on_sigusr1() -> None:
    """`kill -USR1 <pytest pid>` prints where every task of this test is waiting."""
    import signal
    import sys

    def dump() -> None:
        for task in asyncio.all_tasks():
            task.print_stack(limit=6, file=sys.stderr)

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def _bad_records() -> list[tuple[bytes | None, bytes | None]]:
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        (b"CH-BAD", b"{not json"),
        (b"CH-BAD", b"\xff\xfe\xfd not utf-8 \x80"),
        (b"CH-BAD", json.dumps({"type": "erp.invoice.upserted", "payload": {"x": 1}}).encode()),
        (
            b"CH-BAD",
            json.dumps({"event_id": str(uuid.uuid4()), "type": "no.such.type", "payload": {}}).encode(),
        ),
        (b"CH-BAD", None),  # tombstone
        (b"CH-BAD", b""),
        (b"CH-BAD", deep),
        (b"CH-BAD", b'{"pad": "' + b"x" * 990_000 + b'"}'),  # near the broker's 1 MiB limit
        (b"CH-BAD", b"x" * (2 * 1024 * 1024)),  # over it: the broker refuses it at the door
    ]


def _answers(events: dict[uuid.UUID, Any], command_id: uuid.UUID) -> list[Any]:
    return [e for e in events.values() if e.causation_id == command_id and e.type in ANSWERS]


async def _payment_events(infra: Infrastructure, registry: TopicRegistry) -> dict[uuid.UUID, Any]:
    records = await read_topic(infra.bootstrap, registry.payments_events.name, **infra.options())
    events = {}
    for r in records:
        e = decode(registry.payments_events.decoder, r.value)
        if e is not None:
            events[e.event_id] = e
    return events


async def _until_answered(
    infra: Infrastructure, registry: TopicRegistry, load: Load, fleet: Fleet
) -> dict[uuid.UUID, Any]:
    deadline = time.monotonic() + 240
    while True:
        events = await _payment_events(infra, registry)
        answered = {e.causation_id for e in events.values() if e.type in ANSWERS}
        if all(c.event_id in answered for c in load.commands):
            return events
        if time.monotonic() > deadline:
            return events  # the figures show what is missing
        await asyncio.sleep(2)


async def _until_settled(infra: Infrastructure, registry: TopicRegistry, fleet: Fleet) -> None:
    async def settled() -> bool:
        events = await _payment_events(infra, registry)
        requested = {e.payload.payment_id for e in events.values() if e.type == "payment.requested"}
        ended = {e.payload.payment_id for e in events.values() if e.type in ENDINGS}
        return requested <= ended

    await _until(settled, 240, "every payment ended", fleet)


async def _drained(dsn: str) -> bool:
    try:
        return not any((await outbox_depth(dsn)).values())
    except Exception:
        return False


async def _dead_letters_missing(
    infra: Infrastructure, registry: TopicRegistry, bad: dict[str, list[tuple[int, int]]]
) -> int:
    """Each bad record must be on its topic's .dlq once per service that reads the topic."""
    readers = {t.name: len(_readers(registry, t.name)) for t in registry.all}
    missing = 0
    for topic, placed in bad.items():
        letters = await read_topic(infra.bootstrap, f"{topic}.dlq", **infra.options())
        seen: Counter[tuple[int, int]] = Counter()
        services: dict[tuple[int, int], set[str]] = {}
        for r in letters:
            h = {k: v.decode() for k, v in r.headers}
            if h.get("dlq.source.topic") == topic:
                pos = (int(h["dlq.source.partition"]), int(h["dlq.source.offset"]))
                services.setdefault(pos, set()).add(h["dlq.service"])
                seen[pos] += 1
        missing += sum(max(0, readers[topic] - len(services.get(p, set()))) for p in placed)
    return missing


def _readers(registry: TopicRegistry, topic: str) -> list[str]:
    consumers = {
        registry.erp_invoices.name: ["invoice-sync"],
        registry.invoices.name: ["payment-intake", "status-projector"],
        registry.payments_commands.name: ["payment-intake"],
        registry.payments_callbacks.name: ["payment-intake"],
        registry.payments_events.name: ["status-projector"],
    }
    return consumers[topic]


async def _kill(
    kind: str,
    infra: Infrastructure,
    fleet: Fleet,
    http: httpx.AsyncClient,
    rng: random.Random,
    options: dict[str, Any],
) -> Kill:
    at = time.monotonic()
    restart_s = None
    windows: list[tuple[float, float]] = []
    if kind == "service":
        instance = rng.choice(fleet.instances)
        instance.kill()
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        instance.start()
        target = instance.name
    elif kind == "broker" and infra.cluster is not None:
        index = _next_broker(infra)
        infra.cluster.kill(index)
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        restart_s = await asyncio.to_thread(infra.cluster.restart, index)
        target = f"kafka node {index + 1}" + (" (active controller)" if index == _FIRST_CONTROLLER[0] else "")
        await asyncio.to_thread(infra.cluster.until_fully_replicated)
    elif kind == "broker":
        infra.kafka.kill()
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        restart_s = await asyncio.to_thread(infra.kafka.restart)
        target = "kafka"
    elif kind == "rolling":
        assert infra.cluster is not None
        await asyncio.to_thread(infra.cluster.until_fully_replicated)
        started = time.monotonic()
        for index in range(len(infra.cluster.nodes)):
            stopping = time.monotonic()
            await asyncio.to_thread(infra.cluster.shut_down, index)  # controlled shutdown
            await asyncio.to_thread(infra.cluster.restart, index)
            # The next broker only once every partition is back in sync: else two copies
            # of some partition would be down at once, below min.insync.replicas.
            await asyncio.to_thread(infra.cluster.until_fully_replicated)
            windows.append((stopping, time.monotonic()))
        restart_s = time.monotonic() - started
        target = "every kafka node in turn (SIGTERM, restart, in sync)"
    elif kind == "postgres":
        await asyncio.to_thread(infra.postgres.crash)
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        restart_s = await asyncio.to_thread(infra.postgres.restart)
        target = "postgresql (immediate)"
    elif kind == "postgres-fast":
        await asyncio.to_thread(infra.postgres.stop)  # pg_ctl stop -m fast: sessions ended
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        restart_s = await asyncio.to_thread(infra.postgres.restart)
        target = "postgresql (fast shutdown)"
    elif kind == "postgres-freeze":
        infra.postgres.freeze()  # SIGSTOP of the postmaster and every backend
        await asyncio.sleep(rng.uniform(3.0, 6.0))
        infra.postgres.thaw()
        target = "postgresql (SIGSTOP, SIGCONT)"
    elif kind == "postgres-failover":
        assert infra.replica is not None
        infra.postgres.kill()  # the primary's host lost
        await asyncio.sleep(rng.uniform(1.0, 3.0))  # an HA manager noticing
        restart_s = await asyncio.to_thread(infra.replica.promote)
        infra.fail_over()
        target = "postgresql primary (kill -9), standby promoted"
    else:
        assert kind == "replica" and infra.replica is not None
        infra.replica.kill()
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        restart_s = await asyncio.to_thread(infra.replica.restart)
        target = "postgresql replica (kill -9)"
    kill = Kill(kind, target, at, restart_s)
    if kind == "rolling":
        kill.windows = windows
    _say(f"{kind}: {target}; waiting for recovery")
    kill.recovery_s = await _recovered(infra, fleet, http, at, options)
    kill.ended = time.monotonic()
    _say(f"recovered from {kind} in {kill.recovery_s}")
    return kill


_FIRST_CONTROLLER: list[int] = []
_KILLED: list[int] = []


def _next_broker(infra: Infrastructure) -> int:
    """The active controller first, then each other broker in turn: a different one each time."""
    assert infra.cluster is not None
    if not _KILLED:
        index = infra.cluster.active_controller()
        _FIRST_CONTROLLER.append(index)
    else:
        index = (_KILLED[-1] + 1) % len(infra.cluster.nodes)
    _KILLED.append(index)
    return index


async def _recovered(
    infra: Infrastructure, fleet: Fleet, http: httpx.AsyncClient, since: float, options: dict[str, Any]
) -> float | None:
    """Seconds from the kill until a new ERP document reaches the read model again."""
    canary = ErpInvoiceUpserted.originating(
        producer="erp",
        account_id="CH-CANARY",
        payload=ErpInvoiceDocument(
            invoice_number=f"CAN-{uuid.uuid4().hex[:8]}",
            version=1,
            invoice_date=date(2026, 11, 1),
            due_date=date(2026, 12, 1),
            currency="USD",
            total=Decimal("10.00"),
            open_amount=Decimal("10.00"),
            billing_country="US",
        ),
    )
    producer_ok = False
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if not producer_ok:
            with contextlib.suppress(Exception):  # the broker may still be down
                producer_ok = await _send_one(infra.bootstrap, canary, options)
        if producer_ok and await read_model_has(infra.dsn, "CH-CANARY", canary.payload.invoice_number):
            return time.monotonic() - since
        await asyncio.sleep(0.2)
    return None


async def _send_one(bootstrap: str, message: Any, options: dict[str, Any]) -> bool:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000, **options)
    await producer.start()
    try:
        registry = TopicRegistry(prefix="chaos.")
        await producer.send_and_wait(
            registry.erp_invoices.name, message.model_dump_json().encode(), key=message.key()
        )
        return True
    finally:
        await producer.stop()


async def _until(probe: Any, timeout: float, what: str, fleet: Fleet) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{fleet.tail()}")
        await asyncio.sleep(0.5)
