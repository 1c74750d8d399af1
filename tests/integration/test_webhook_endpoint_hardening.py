"""The webhook endpoint (POST /callbacks/provider) of a payment-intake process under abuse,
on loopback, on real Kafka and PostgreSQL.

A bounded flood of forged, stale, replayed, oversized, slow-header and slow-body requests
runs while valid callbacks keep arriving: every valid one is accepted promptly, no forged
one is, an oversized body is refused before it is read, slow clients are cut off. Two
secrets verify at once (a rotation), and the service refuses to start on the sandbox's
published secret, or on none, outside sandbox mode.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from payment_intake_support import fresh_database, fresh_topics, sign

from kafka_tools import eventually, read_all
from payments_contracts.topics import TopicRegistry
from payments_platform.http_limits import HEAD_TIMEOUT_S
from payments_platform.sandbox import SANDBOX_WEBHOOK_SECRET
from system import System, free_port

pytestmark = pytest.mark.integration

NEW_SECRET = "whsec_" + "bmV3LXNlY3JldC1hZnRlci10aGUtcm90YXRpb24tMDE="
WRONG_SECRET = "whsec_" + "bm90LXRoZS1wcm92aWRlcnMtc2VjcmV0LWF0LWFsbA=="
BODY_TIMEOUT_S = 6.0
MAX_BODY = 64 * 1024
VALID_DURING_FLOOD = 25
PROVIDER_TIMEOUT_S = 15.0
FORGED, REPLAYS = 300, 100
SLACK_S = 10.0  # scheduling delays of a loaded machine, on top of a deadline


@dataclass
class Endpoint:
    url: str
    port: int
    database: str
    topics: TopicRegistry
    system: System


def intake_system(kafka: str, database: str, prefix: str, logs: Path, **env: str) -> System:
    logs.mkdir(parents=True, exist_ok=True)
    return System(
        kafka_bootstrap=kafka,
        database_url=database,
        log_dir=logs,
        bin_dir=Path(sys.executable).parent,
        topic_prefix=prefix,
        ports={"payment-intake": free_port(), "sandbox-provider": free_port()},
        # Rotation in progress: the old (sandbox) secret and the new one both verify.
        webhook_secret=f"{SANDBOX_WEBHOOK_SECRET}, {NEW_SECRET}",
        extra_env={
            "PAYMENT_INTAKE_CALLBACK_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
            "PAYMENT_INTAKE_CALLBACK_MAX_BYTES": str(MAX_BODY),
            **env,
        },
    )


@pytest.fixture(scope="module")
async def endpoint(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Endpoint]:
    tmp = tmp_path_factory.mktemp("webhooks")
    async with fresh_database(postgres_url) as database:
        topics = await fresh_topics(kafka_bootstrap)
        system = intake_system(kafka_bootstrap, database, topics.prefix, tmp / "logs")
        system.start_one("payment-intake")
        try:
            system.wait_ready("payment-intake", timeout=60)
            port = system.ports["payment-intake"]
            yield Endpoint(f"http://127.0.0.1:{port}", port, database, topics, system)
        finally:
            assert system.stop().get("payment-intake") == 0


def callback(account: str = "ACC-1", kind: str = "payment.processing") -> str:
    data = {
        "checkout_id": f"cs_{uuid.uuid4().hex[:8]}",
        "payment_id": str(uuid.uuid4()),
        "account_id": account,
        "amount_minor": 1000,
        "currency": "USD",
    }
    return json.dumps({"type": kind, "timestamp": datetime.now(UTC).isoformat(), "data": data})


async def stored(database: str, ids: list[str]) -> int:
    conn = await asyncpg.connect(database, server_settings={"search_path": "payment_intake"})
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM webhooks_received WHERE webhook_id = ANY($1)", ids)
        )
    finally:
        await conn.close()


async def test_both_secrets_of_a_rotation_verify_and_no_other(endpoint: Endpoint) -> None:
    async with httpx.AsyncClient(base_url=endpoint.url) as client:
        for secret, expected in ((SANDBOX_WEBHOOK_SECRET, 200), (NEW_SECRET, 200), (WRONG_SECRET, 401)):
            body = callback()
            response = await client.post(
                "/callbacks/provider", content=body, headers=sign(body, secret=secret)
            )
            assert response.status_code == expected, (secret[:12], response.text)


# Validly signed, under the size cap, and not a callback: the provider's secret is right,
# its body is wrong, and it must be told so (400), not that its secret is wrong (401),
# nor that we took it (200), nor that we broke (500).
NOT_THE_CONTRACT = {
    "nested 20,000 deep": "[" * 20_000 + "]" * 20_000,  # 40 KB: json.loads recurses past its limit
    "truncated JSON": callback()[:-25],
    "plain text": "payment succeeded, trust me",
    "empty body": "",
    "null": "null",
    "JSON array": json.dumps([json.loads(callback())]),
    "bare number": "42",
    "object without a type": json.dumps({"data": json.loads(callback())["data"]}),
    "data not an object": json.dumps({**json.loads(callback()), "data": ["ACC-1"]}),
}


@pytest.mark.parametrize("body", NOT_THE_CONTRACT.values(), ids=NOT_THE_CONTRACT.keys())
async def test_a_signed_body_that_is_not_the_contract_is_answered_400_invalid_body(
    endpoint: Endpoint, body: str
) -> None:
    assert len(body.encode()) < MAX_BODY
    webhook_id = f"msg_not_contract_{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=endpoint.url) as client:
        response = await client.post(
            "/callbacks/provider", content=body, headers=sign(body, webhook_id=webhook_id)
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_body", response.text
    assert await stored(endpoint.database, [webhook_id]) == 0


# --- the flood --------------------------------------------------------------------------------


async def _slow_head(port: int, results: list[float]) -> None:
    """Sends a request head one header line a second; records when the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()  # the server's clock started a little earlier: a lower bound
    try:
        writer.write(b"POST /callbacks/provider HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - started < HEAD_TIMEOUT_S * 4:
            try:
                if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                    break
            except TimeoutError:
                writer.write(b"x-slow: 1\r\n")
                await writer.drain()
        else:
            return  # never cut off: missing from results
        results.append(time.monotonic() - started)
    except ConnectionError:
        results.append(time.monotonic() - started)
    finally:
        writer.close()


async def _slow_body(port: int, results: list[tuple[int, float]]) -> None:
    """Sends a complete head and then its body a byte a second."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(
            b"POST /callbacks/provider HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
        answer = b""
        while time.monotonic() - started < BODY_TIMEOUT_S * 4 and not answer:
            try:
                answer = await asyncio.wait_for(reader.read(1024), 1.0)
            except TimeoutError:
                writer.write(b" ")
        status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
        results.append((status, time.monotonic() - started))
    except ConnectionError:
        results.append((0, time.monotonic() - started))
    finally:
        writer.close()


async def _declared_too_large(port: int, results: list[tuple[int, float]]) -> None:
    """Announces 100 MiB and sends none of it: the answer comes without the body read."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(
        b"POST /callbacks/provider HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
        + f"content-length: {100 * 1024 * 1024}\r\n\r\n".encode()
    )
    answer = await asyncio.wait_for(reader.read(1024), 20.0)
    results.append((int(answer.split(b" ", 2)[1]), time.monotonic() - started))
    writer.close()


async def _streamed_too_large(client: httpx.AsyncClient, results: list[int], sent: list[int]) -> None:
    """A chunked body with no length: refused once the cap is passed, the rest unread."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(1600):  # would be 100 MiB
            sent.append(64 * 1024)
            yield b"x" * (64 * 1024)

    try:
        response = await client.post("/callbacks/provider", content=chunks())
        results.append(response.status_code)
    except httpx.TransportError:
        results.append(413)  # the server answered and closed while we were still sending


async def test_oversized_bodies_are_refused_before_they_are_read(endpoint: Endpoint) -> None:
    declared: list[tuple[int, float]] = []
    await asyncio.gather(*(_declared_too_large(endpoint.port, declared) for _ in range(5)))
    assert {status for status, _ in declared} == {413}
    assert max(took for _, took in declared) < 5.0  # 100 MiB announced, none of it sent or awaited
    streamed: list[int] = []
    sent: list[int] = []
    async with httpx.AsyncClient(base_url=endpoint.url, timeout=30) as client:
        await asyncio.gather(*(_streamed_too_large(client, streamed, sent) for _ in range(3)))
    assert set(streamed) == {413}
    assert sum(sent) / 3 < 4 * 1024 * 1024  # of the 100 MiB each would have sent


async def test_slow_clients_are_cut_off(endpoint: Endpoint) -> None:
    heads: list[float] = []
    bodies: list[tuple[int, float]] = []
    await asyncio.gather(
        *(_slow_head(endpoint.port, heads) for _ in range(20)),
        *(_slow_body(endpoint.port, bodies) for _ in range(5)),
    )
    assert len(heads) == 20 and max(heads) < HEAD_TIMEOUT_S + SLACK_S
    assert {status for status, _ in bodies} == {408}
    assert max(took for _, took in bodies) < BODY_TIMEOUT_S + SLACK_S


async def test_valid_callbacks_are_accepted_during_a_flood_and_no_forged_one_is(
    endpoint: Endpoint, kafka_bootstrap: str
) -> None:
    port = endpoint.port
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=0)
    flood = httpx.AsyncClient(base_url=endpoint.url, limits=limits, timeout=60)
    portal = httpx.AsyncClient(base_url=endpoint.url, timeout=60)
    forged_ids: list[str] = []
    replayed = callback()
    replay_headers = sign(replayed, webhook_id=f"msg_replayed_{uuid.uuid4().hex[:6]}")
    statuses: dict[str, list[int]] = {"forged": [], "replayed": []}
    slow_heads: list[float] = []
    slow_bodies: list[tuple[int, float]] = []
    declared: list[tuple[int, float]] = []
    streamed: list[int] = []
    streamed_sent: list[int] = []

    def forged_request(i: int) -> tuple[str, dict[str, str]]:
        body = callback("VICTIM", "payment.succeeded")
        webhook_id = f"msg_forged_{uuid.uuid4().hex}"
        forged_ids.append(webhook_id)
        if i % 3 == 0:  # a valid signature, but over another body
            return body, sign(callback("OTHER"), webhook_id=webhook_id)
        if i % 3 == 1:  # a valid signature, but an hour old
            return body, sign(body, webhook_id=webhook_id, at=datetime.now(UTC) - timedelta(hours=1))
        return body, sign(body, webhook_id=webhook_id, secret=WRONG_SECRET)

    forged_requests = [forged_request(i) for i in range(FORGED)]  # signed before the clock starts

    async def post(kind: str, body: str, headers: dict[str, str]) -> None:
        try:
            response = await flood.post("/callbacks/provider", content=body, headers=headers)
        except httpx.TransportError:
            statuses[kind].append(0)  # cut off: on a loaded machine our own client can be the slow one
        else:
            statuses[kind].append(response.status_code)

    attack = [
        *(_slow_head(port, slow_heads) for _ in range(100)),
        *(_slow_body(port, slow_bodies) for _ in range(10)),
        *(_declared_too_large(port, declared) for _ in range(10)),
        *(_streamed_too_large(flood, streamed, streamed_sent) for _ in range(3)),
        *(post("forged", body, headers) for body, headers in forged_requests),
        *(post("replayed", replayed, replay_headers) for _ in range(REPLAYS)),
    ]
    flood_task = asyncio.gather(*attack)
    await asyncio.sleep(1.0)  # the flood is under way: connections open, requests in flight
    valid_ids: list[str] = []
    latencies: list[float] = []
    try:
        for _ in range(VALID_DURING_FLOOD):
            body = callback()
            webhook_id = f"msg_valid_{uuid.uuid4().hex}"
            sent = time.monotonic()
            response = await portal.post(
                "/callbacks/provider", content=body, headers=sign(body, webhook_id=webhook_id)
            )
            latencies.append(time.monotonic() - sent)
            assert response.status_code == 200 and response.json()["status"] == "accepted", response.text
            valid_ids.append(webhook_id)
            await asyncio.sleep(0.3)  # spread over the flood, slow clients hanging on
        await asyncio.wait_for(flood_task, 120)
    finally:
        flood_task.cancel()
        await flood.aclose()
        await portal.aclose()

    accepted_forged = await stored(endpoint.database, forged_ids)
    print(
        f"\nflood: {len(attack)} hostile requests and connections; valid callbacks "
        f"{len(valid_ids)}/{VALID_DURING_FLOOD} accepted, slowest {max(latencies) * 1000:.0f} ms, median "
        f"{sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms; forged/stale/tampered accepted "
        f"{accepted_forged} of {len(forged_ids)} (refused 401/400: "
        f"{statuses['forged'].count(401) + statuses['forged'].count(400)}, cut off: "
        f"{statuses['forged'].count(0)}); replays answered {statuses['replayed'].count(200)}; "
        f"oversized {sorted({s for s, _ in declared} | set(streamed))}; "
        f"slow {sorted({s for s, _ in slow_bodies})}"
    )
    # Every valid callback is answered within a provider's usual webhook timeout, on 2 cores
    # shared with the flood, its client, Kafka and PostgreSQL (and, in CI, other suites).
    assert len(valid_ids) == VALID_DURING_FLOOD and max(latencies) < PROVIDER_TIMEOUT_S
    assert accepted_forged == 0
    assert set(statuses["forged"]) <= {400, 401, 0} and statuses["forged"].count(0) < FORGED // 10
    assert set(statuses["replayed"]) <= {200, 0} and statuses["replayed"].count(200) > REPLAYS * 9 // 10
    # Hostile bodies and heads: refused or cut off, never served (the exact timings are in
    # the tests above; here our own starved client may be what is slow).
    assert {s for s, _ in declared} | set(streamed) <= {413, 408}
    assert {s for s, _ in slow_bodies} <= {408, 0} and len(slow_heads) == 100

    async def published_ids() -> list[str]:
        records = await read_all(kafka_bootstrap, endpoint.topics.payments_callbacks.name)
        return [json.loads(r.value)["payload"]["webhook_id"] for r in records]

    ids = await eventually(published_ids, lambda ids: set(valid_ids) <= set(ids), what="valid callbacks")
    assert ids.count(replay_headers["webhook-id"]) == 1  # replayed 100 times, one effect
    assert not set(forged_ids) & set(ids)


# --- start-up refusals ------------------------------------------------------------------------


def _refusal(tmp_path: Path, **env: str) -> str:
    system = intake_system("127.0.0.1:1", "postgresql://nobody@127.0.0.1:1/none", "", tmp_path, **env)
    environ = system.env()
    if "PAYMENTS_WEBHOOK_SECRET" in env:
        environ["PAYMENTS_WEBHOOK_SECRET"] = env["PAYMENTS_WEBHOOK_SECRET"]
    else:
        environ.pop("PAYMENTS_WEBHOOK_SECRET")
    done = subprocess.run(
        [str(system.bin_dir / "payment-intake")], env=environ, capture_output=True, timeout=60, check=False
    )
    assert done.returncode != 0, "started although it must not"
    return done.stderr.decode()


def test_outside_sandbox_mode_the_published_secret_or_none_refuses_to_start(tmp_path: Path) -> None:
    assert "PAYMENTS_WEBHOOK_SECRET is not set" in _refusal(tmp_path, PAYMENTS_SANDBOX="0")
    published = _refusal(
        tmp_path, PAYMENTS_SANDBOX="0", PAYMENTS_WEBHOOK_SECRET=f"{NEW_SECRET} {SANDBOX_WEBHOOK_SECRET}"
    )
    assert "published secret" in published
