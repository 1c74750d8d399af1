"""The read API as a merchant's portal backend meets it: the status-projector process,
configured as in production (hashed keys, no sandbox mode), on real Kafka and PostgreSQL.

- a key reads only its merchant's accounts; another merchant's account answers exactly
  as an unknown one; two live keys per merchant (rotation); no key or a bad one: 401;
- bad text (NUL, lone surrogates) in any parameter is a 4xx, never a 500;
- schemathesis fuzzes the committed OpenAPI document: no 5xx, every response as the
  document says, never another tenant's data;
- without keys of its own, or with a published demo key, the service refuses to start.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from payment_intake_support import fresh_database, fresh_topics
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from status_projector_support import Clock, account_story, publish

from payments_platform.sandbox import demo_api_key
from status_projector.domain.access import digest_of, new_api_key
from status_projector.entrypoints.http import encode_cursor
from status_projector.entrypoints.openapi import DOCUMENT
from system import System, free_port

pytestmark = pytest.mark.integration

NORTH_ACCOUNTS = ("N-1", "N-2")
SOUTH_ACCOUNTS = ("S-1",)
UNKNOWN = "Z-404"


@dataclass
class ReadApi:
    url: str
    north_keys: tuple[str, str]  # two live keys: a rotation in progress
    south_key: str
    log: Path
    figures: dict[str, int] = field(default_factory=dict)

    def headers(self, key: str | None) -> dict[str, str]:
        return {} if key is None else {"authorization": f"Bearer {key}"}


def merchant_file(path: Path, north: tuple[str, str], south: str) -> Path:
    path.write_text(
        json.dumps(
            {
                "merchants": {
                    "north": {"accounts": list(NORTH_ACCOUNTS), "api_keys": [digest_of(k) for k in north]},
                    "south": {"accounts": list(SOUTH_ACCOUNTS), "api_keys": [digest_of(south)]},
                }
            }
        )
    )
    return path


def projector(kafka: str, database: str, prefix: str, logs: Path, merchants: Path | None) -> System:
    logs.mkdir(parents=True, exist_ok=True)
    system = System(
        kafka_bootstrap=kafka,
        database_url=database,
        log_dir=logs,
        bin_dir=Path(sys.executable).parent,
        topic_prefix=prefix,
        ports={"status-projector": free_port()},
        merchant_config=merchants,
        extra_env={"PAYMENTS_SANDBOX": "0"},  # configured as in production
    )
    return system


@pytest.fixture(scope="module")
async def read_api(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ReadApi]:
    tmp = tmp_path_factory.mktemp("read-api")
    north, south = (new_api_key(), new_api_key()), new_api_key()
    async with fresh_database(postgres_url) as database:
        topics = await fresh_topics(kafka_bootstrap)
        clock = Clock()
        await publish(
            kafka_bootstrap,
            topics,
            [e for account in (*NORTH_ACCOUNTS, *SOUTH_ACCOUNTS) for e in account_story(clock, account)],
        )
        system = projector(
            kafka_bootstrap,
            database,
            topics.prefix,
            tmp / "logs",
            merchant_file(tmp / "m.json", north, south),
        )
        system.start_one("status-projector")
        try:
            system.wait_ready("status-projector", timeout=60)
            api = ReadApi(system.url("status-projector"), north, south, tmp / "logs" / "status-projector.log")
            async with httpx.AsyncClient(base_url=api.url, headers=api.headers(south)) as client:
                deadline = time.monotonic() + 30
                while (
                    await client.get(f"/v1/accounts/{SOUTH_ACCOUNTS[0]}/invoices/S-1-INV-2")
                ).status_code != 200:
                    assert time.monotonic() < deadline, "the projection did not catch up"
                    await asyncio.sleep(0.1)
            yield api
        finally:
            system.stop()


def _same_as_unknown(client: httpx.Client, path: str, account: str, **params: Any) -> tuple[bool, int]:
    """Whether `account` answers exactly as an account nobody has (ids aside)."""
    theirs = client.get(path.format(account=account), params=params)
    nobodys = client.get(path.format(account=UNKNOWN), params=params)
    return theirs.status_code == nobodys.status_code and _without(theirs, account) == _without(
        nobodys, UNKNOWN
    ), theirs.status_code


def _without(response: httpx.Response, account: str) -> Any:
    text = response.text.replace(f"account {account}", "account <id>").replace(f'"{account}"', '"<id>"')
    body = json.loads(text)
    if isinstance(body, dict):
        body.pop("freshness", None)  # offsets of the account's partition, not its data
    return body


def test_a_key_reads_only_its_merchants_accounts(read_api: ReadApi) -> None:
    attempted = succeeded = 0
    paths = [
        ("/v1/accounts/{account}/invoices", {}),
        ("/v1/accounts/{account}/invoices", {"cursor": encode_cursor("due_date", _date(), "X")}),
        ("/v1/accounts/{account}/summary", {}),
        ("/v1/accounts/{account}/invoices/{number}", {}),
    ]

    def try_theirs(client: httpx.Client, accounts: tuple[str, ...]) -> None:
        nonlocal attempted, succeeded
        for account in accounts:
            for path, params in paths:
                attempted += 1
                same, _ = _same_as_unknown(
                    client, path.replace("{number}", f"{account}-INV-0"), account, **params
                )
                succeeded += not same

    for key in read_api.north_keys:  # both live keys of the rotation work, for north only
        with httpx.Client(base_url=read_api.url, headers=read_api.headers(key)) as client:
            for account in NORTH_ACCOUNTS:
                response = client.get(f"/v1/accounts/{account}/invoices")
                assert response.status_code == 200 and len(response.json()["items"]) == 3
            try_theirs(client, SOUTH_ACCOUNTS)
    with httpx.Client(base_url=read_api.url, headers=read_api.headers(read_api.south_key)) as client:
        assert client.get("/v1/accounts/S-1/summary").json()["account_id"] == "S-1"
        try_theirs(client, NORTH_ACCOUNTS)
    print(
        f"\ncross-tenant reads attempted {attempted}, answered otherwise than an unknown account {succeeded}"
    )
    assert attempted == 16 and succeeded == 0


def _date() -> date:
    return date(2025, 1, 1)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "no key"),
        ({"authorization": "Bearer pk_not_a_key_of_anyone"}, "unknown key"),
        ({"authorization": f"Bearer {demo_api_key('north')}"}, "demo key outside sandbox mode"),
        ({"authorization": "Basic bm9ydGg6bm9ydGg="}, "another scheme"),
    ],
)
def test_without_a_valid_key_every_read_is_401(read_api: ReadApi, headers: dict[str, str], why: str) -> None:
    with httpx.Client(base_url=read_api.url, headers=headers) as client:
        for path in ("/v1/accounts/N-1/invoices", "/v1/accounts/N-1/summary", "/v1/accounts/Z/invoices/X"):
            response = client.get(path)
            assert response.status_code == 401, (why, path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
        assert client.get("/health/live").status_code == 200  # health and metrics stay open
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/accounts/N-1%00/invoices",
        "/v1/accounts/%00/summary",
        "/v1/accounts/N-1/invoices/INV%00-1",
        "/v1/accounts/%ED%A0%80/invoices",  # the UTF-8 bytes of a lone surrogate
        "/v1/accounts/N-1/invoices?cursor=%00",
        "/v1/accounts/N-1/invoices?cursor=%ED%A0%80",
        "/v1/accounts/N-1/invoices?cursor=" + encode_cursor("due_date", _date(), "X\x00"),
        "/v1/accounts/N-1/invoices?cursor=" + encode_cursor("due_date", _date(), "X\ud800"),
        "/v1/accounts/N-1/invoices?pay_status=%00",
        "/v1/accounts/" + "9" * 5000 + "/invoices",
    ],
)
def test_bad_text_in_any_parameter_is_a_4xx(read_api: ReadApi, path: str) -> None:
    with httpx.Client(base_url=read_api.url, headers=read_api.headers(read_api.north_keys[0])) as client:
        response = client.get(path)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


# --- schemathesis over the committed OpenAPI document --------------------------------------

SCHEMA = schemathesis.openapi.from_path(DOCUMENT.path)
CHECKS = [content_type_conformance, response_schema_conformance, status_code_conformance]
ACCOUNTS = st.sampled_from([None, *NORTH_ACCOUNTS, *SOUTH_ACCOUNTS])
# Text PostgreSQL cannot store, which the generated strings rarely contain.
NASTY = st.one_of(st.none(), st.sampled_from(["\x00", "N-1\x00", "\ud800", "x\udfff", "\x00\ud800"]))
EXAMPLES_PER_OPERATION = 100


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", sorted(op.ok().label for op in SCHEMA.get_all_operations()))
def test_fuzzed_reads_never_fail_and_never_cross_tenants(
    read_api: ReadApi, operation: str, mode: GenerationMode
) -> None:
    method, path = operation.split(" ", 1)
    strategy = SCHEMA[path][method].as_strategy(generation_mode=mode)
    seen = {"requests": 0, "5xx": 0, "cross_tenant": 0, "cross_tenant_data": 0}

    @given(case=strategy, account=ACCOUNTS, nasty=NASTY, key=st.sampled_from(["north", "south", "none"]))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: Any, account: str | None, nasty: str | None, key: str) -> None:
        if account is not None and isinstance(case.path_parameters, dict):
            case.path_parameters["account_id"] = account  # real accounts, ours and theirs
        if nasty is not None:
            _plant(case, nasty)
        secret = {"north": read_api.north_keys[0], "south": read_api.south_key, "none": None}[key]
        headers = {**(case.headers or {}), **read_api.headers(secret)}
        if secret is None:
            headers.pop("authorization", None)
        response = case.call(base_url=read_api.url, headers=headers)
        seen["requests"] += 1
        theirs = (key == "north" and account in SOUTH_ACCOUNTS) or (
            key == "south" and account in NORTH_ACCOUNTS
        )
        seen["cross_tenant"] += theirs
        # An unknown account with a cursor is an empty page; any other 200 is the account's data.
        seen["cross_tenant_data"] += (
            theirs and response.status_code == 200 and response.json().get("items") != []
        )
        seen["5xx"] += response.status_code >= 500
        assert response.status_code < 500, (case.path_parameters, case.query, response.text[:300])
        case.validate_response(response, checks=CHECKS)
        if response.status_code == 200:
            mine = NORTH_ACCOUNTS if key == "north" else SOUTH_ACCOUNTS
            assert response.json()["account_id"] in mine, "another tenant's data"

    try:
        fuzz()
    finally:
        print(
            f"\n{operation} [{mode.value}]: {seen['requests']} requests fuzzed, {seen['5xx']} 5xx, "
            f"{seen['cross_tenant']} cross-tenant, {seen['cross_tenant_data']} answered with data"
        )
    assert seen["5xx"] == 0 and seen["cross_tenant_data"] == 0


def _plant(case: Any, text: str) -> None:
    """Put `text` where it can travel: a lone surrogate has no UTF-8 form, so it only
    reaches the server JSON-escaped inside a cursor; a NUL goes into the invoice number
    or, raw and inside a valid-looking cursor, into the cursor."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        travels = False
    else:
        travels = True
    if travels and isinstance(case.path_parameters, dict) and "invoice_number" in case.path_parameters:
        case.path_parameters["invoice_number"] = text
    elif isinstance(case.query, dict) or case.query is None:
        case.query = dict(case.query or {})
        inside = encode_cursor(str(case.query.get("sort", "due_date")), _date(), text)
        case.query["cursor"] = text if travels and len(text) % 2 else inside


# --- start-up refusals ------------------------------------------------------------------------


def _refusal(tmp_path: Path, merchants: Path | None, sandbox: str = "0") -> str:
    system = projector(
        "127.0.0.1:1", "postgresql://nobody@127.0.0.1:1/none", "", tmp_path / "logs", merchants
    )
    system.extra_env["PAYMENTS_SANDBOX"] = sandbox
    environ = system.env()
    if merchants is None:  # System gives every run a file otherwise
        environ.pop("PAYMENTS_MERCHANT_CONFIG")
    done = subprocess.run(
        [str(system.bin_dir / "status-projector")],
        env=environ,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, "started although it must not"
    return done.stderr.decode()


def test_the_service_refuses_to_start_without_keys_of_its_own(tmp_path: Path) -> None:
    assert "PAYMENTS_MERCHANT_CONFIG is not set" in _refusal(tmp_path, None)
    keyless = tmp_path / "keyless.json"
    keyless.write_text(json.dumps({"merchants": {"north": {"accounts": ["N-1"]}}}))
    assert "no merchant in the merchant file has an api key" in _refusal(tmp_path, keyless)
    demo = tmp_path / "demo.json"
    demo.write_text(
        json.dumps(
            {"merchants": {"north": {"accounts": ["N-1"], "api_keys": [digest_of(demo_api_key("north"))]}}}
        )
    )
    assert "published demo key" in _refusal(tmp_path, demo)
