"""`make run`: the whole system on this machine, with demo invoices from the seed pages.

Starts Kafka and PostgreSQL (deploy/runtime/), the sandbox provider, the three
services and the reference portal (services/demo-portal) as OS processes
(deploy/system.py), loads the demo invoices, prints their pay status, walks one invoice
through payable -> pending -> paid, then keeps running for you to try until Ctrl-C,
which stops everything cleanly. The seed's USD 1,250.00 invoice (INV-1001) is left for
you to pay on the portal page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Your own merchant file when you set one (its accounts decide who may pay); else the demo's.
MERCHANT_FILE = Path(os.environ.get("PAYMENTS_MERCHANT_CONFIG") or HERE / "demo" / "merchants.yaml").resolve()
sys.path.insert(0, str(HERE))

import httpx  # noqa: E402
from aiokafka import AIOKafkaProducer  # noqa: E402

from demo.invoices import DEMO, documents  # noqa: E402
from payments_contracts.money import Money  # noqa: E402
from payments_contracts.payments import (  # noqa: E402
    BillingAddress,
    GuestCheckout,
    PayInvoice,
    PayInvoicePayload,
)
from payments_contracts.topics import TopicRegistry  # noqa: E402
from payments_platform.kafka import client_options  # noqa: E402
from payments_platform.merchants import load_merchant_file  # noqa: E402
from payments_platform.sandbox import demo_api_key  # noqa: E402
from payments_platform.topic_admin import ensure_topics  # noqa: E402
from system import (  # noqa: E402
    DEFAULT_INFRASTRUCTURE_PORTS,
    DEFAULT_PORTS,
    INFRASTRUCTURE_PORT_ENV,
    PORT_ENV,
    System,
    configured_ports,
    fresh_infrastructure,
    refuse_taken_ports,
    stop_all,
)

MERCHANTS = load_merchant_file(MERCHANT_FILE)


def portal_headers(account: str) -> dict[str, str]:
    """What the account's merchant's portal backend sends: its (sandbox demo) API key."""
    return {"authorization": f"Bearer {demo_api_key(MERCHANTS.merchant_of(account) or '')}"}


def say(text: str = "") -> None:
    print(text, flush=True)


def your_infrastructure() -> tuple[str, str] | None:
    """Your Kafka and PostgreSQL when you name both; else make run starts its own."""
    kafka, database = os.environ.get("PAYMENTS_KAFKA_BOOTSTRAP"), os.environ.get("PAYMENTS_DATABASE_URL")
    return (kafka, database) if kafka and database else None


async def publish(bootstrap: str, topic: str, messages: list) -> None:  # type: ignore[type-arg]
    producer = AIOKafkaProducer(**client_options(bootstrap), acks="all")
    await producer.start()
    try:
        for m in messages:
            await producer.send_and_wait(topic, m.model_dump_json().encode(), key=m.key())
    finally:
        await producer.stop()


async def statuses(client: httpx.AsyncClient) -> dict[str, dict]:  # type: ignore[type-arg]
    seen = {}
    for account in sorted({row[0] for row in DEMO}):
        response = await client.get(f"/v1/accounts/{account}/invoices", headers=portal_headers(account))
        if response.status_code == 200:
            for item in response.json()["items"]:
                seen[item["invoice_number"]] = item
    return seen


def print_table(rows: dict[str, dict]) -> None:  # type: ignore[type-arg]
    say(f"  {'account':9} {'invoice':9} {'balance':>14}  {'pay status':25} {'Pay':4} note")
    for account, number, *_, note in DEMO:
        r = rows.get(number)
        if r is None:
            say(f"  {account:9} {number:9} {'?':>14}  {'(not yet seen)':25}")
            continue
        balance = _money(r["balance"])
        status = r["pay_status"] + (f" ({r['not_payable_reason']})" if r.get("not_payable_reason") else "")
        button = "yes" if r["pay_button"] else "no"
        say(f"  {account:9} {number:9} {balance:>14}  {status:25} {button:4} {note}")


def _money(m: dict) -> str:  # type: ignore[type-arg]
    return f"{Money(**m).to_decimal():,} {m['currency']}"


async def wait_for(client: httpx.AsyncClient, number: str, status: str, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = (await statuses(client)).get(number)
        if row and row["pay_status"] == status:
            return row
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{number} did not become {status}")


async def walk_through(system: System, topics: TopicRegistry) -> None:
    async with httpx.AsyncClient(base_url=system.url("status-projector")) as projector:
        await publish(system.kafka_bootstrap, topics.erp_invoices.name, documents())
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = await statuses(projector)
            if len(rows) == len(DEMO) and all(
                r["pay_status"] != "not_payable" or r.get("not_payable_reason") != "not_registered"
                for r in rows.values()
            ):
                break
            await asyncio.sleep(0.3)
        say("\nDemo invoices (from the two seed portals):")
        print_table(await statuses(projector))

        say("\nWalk-through: pay INV-1002 (USD 310.40) by guest checkout, as in seed 000")
        command = PayInvoice.originating(
            producer="demo-portal",
            account_id="C-10042",
            payload=PayInvoicePayload(
                idempotency_key=f"demo-{uuid.uuid4().hex[:8]}",
                invoice_number="INV-1002",
                method=GuestCheckout(
                    billing_address=BillingAddress(
                        email="ap@contoso.example",
                        street="1 Harbor Way",
                        address_line2="Suite 400",
                        country="US",
                        postal_code="02110",
                        phone_country_code="+1",
                        phone_number="6175550100",
                    ),
                    name_on_card="Pat Buyer",
                ),
            ),
        )
        await publish(system.kafka_bootstrap, topics.payments_commands.name, [command])
        row = await wait_for(projector, "INV-1002", "pending")
        say(f"  pay command sent             -> {row['pay_status']}")
        async with httpx.AsyncClient(base_url=system.url("sandbox-provider")) as provider:
            checkout = None
            while checkout is None:
                listed = (await provider.get("/sandbox/checkouts")).json()
                checkout = next(
                    (c for c in listed if c["account_id"] == "C-10042" and c["status"] == "open"), None
                )
                await asyncio.sleep(0.2)
            page = f"{system.url('sandbox-provider')}/checkout/{checkout['checkout_id']}"
            say(f"  checkout opened              -> {page}")
            await provider.post(f"/sandbox/checkouts/{checkout['checkout_id']}/complete")
        row = await wait_for(projector, "INV-1002", "paid")
        say(f"  provider completed + webhook -> {row['pay_status']}, balance {_money(row['balance'])}")
        say("\nAfter the walk-through:")
        print_table(await statuses(projector))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, default=Path(".run"))
    args = parser.parse_args()
    state_dir = args.state_dir.resolve()
    yours = your_infrastructure()
    ports = configured_ports(DEFAULT_PORTS, PORT_ENV)
    infrastructure_ports = configured_ports(DEFAULT_INFRASTRUCTURE_PORTS, INFRASTRUCTURE_PORT_ENV)
    refuse_taken_ports("make run", ports | ({} if yours else infrastructure_ports), state_dir)
    own = None if yours else state_dir  # the Kafka and PostgreSQL to stop at the end
    system: System | None = None
    stop = False

    def request_stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, request_stop)
    try:
        if yours:
            kafka, database = yours
            prefix = f"demo{uuid.uuid4().hex[:6]}."
            say(f"using your Kafka {kafka} and PostgreSQL {database}; demo topics are prefixed")
        else:
            env = fresh_infrastructure(
                state_dir, infrastructure_ports["kafka"], infrastructure_ports["postgresql"]
            )
            kafka, database, prefix = env["PAYMENTS_KAFKA_BOOTSTRAP"], env["PAYMENTS_DATABASE_URL"], ""
        topics = TopicRegistry(prefix)
        asyncio.run(ensure_topics(kafka, topics))
        system = System(
            kafka_bootstrap=kafka,
            database_url=database,
            log_dir=state_dir / "logs",
            bin_dir=Path(sys.executable).parent,
            topic_prefix=prefix,
            merchant_config=MERCHANT_FILE,
            extra_env={
                "PAYMENT_INTAKE_MERCHANT_CONFIG": str(MERCHANT_FILE),
                "DEMO_PORTAL_MERCHANT_CONFIG": str(MERCHANT_FILE),
            },
            with_portal=True,
            ports=ports,
        )
        system.start()
        say(f"\n  Portal: {system.url('demo-portal')}   (open it in a browser: pay INV-1001, USD 1,250.00)")
        say("\nRunning (logs in " + str(state_dir / "logs") + "):")
        for name in ("demo-portal", "invoice-sync", "payment-intake", "status-projector", "sandbox-provider"):
            say(f"  {name:17} {system.url(name)}")
        say(f"  kafka             {kafka}\n  postgresql        {database}")
        say(f"  merchant file     {MERCHANT_FILE}")
        asyncio.run(walk_through(system, topics))
        say("\nPortal API keys (sandbox demo keys; each reads only its merchant's accounts):")
        for merchant in MERCHANTS.merchants:
            say(f"  {merchant.name:30} {demo_api_key(merchant.name)}")
        say("\nTry it:")
        say(f"  open {system.url('demo-portal')}  (the seed 000 portal; the seed 003 one: /accounts/A-20077)")
        for account, path in (("C-10042", "invoices"), ("A-20077", "summary")):
            key = demo_api_key(MERCHANTS.merchant_of(account) or "")
            say(
                f"  curl -H 'Authorization: Bearer {key}' "
                f"{system.url('status-projector')}/v1/accounts/{account}/{path}"
            )
        say(f"  open {system.url('sandbox-provider')}/sandbox/checkouts  (checkout pages: /checkout/<id>)")
        say("\nCtrl-C stops everything (a second Ctrl-C kills instead of waiting).")
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        say("")
        stop_all(system, own, say)
        say("stopped.")

if __name__ == "__main__":
    main()
