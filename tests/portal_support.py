"""One running system (services as OS processes, optionally the reference portal) shared by
a test module: its own database, topic prefix and merchant file."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from database_tools import fresh_database
from payments_contracts.topics import TopicRegistry
from payments_platform.topic_admin import ensure_topics
from system import System, free_port


@asynccontextmanager
async def running_system(
    kafka_bootstrap: str,
    postgres_url: str,
    work: Path,
    merchants: dict[str, Any],
    *,
    with_portal: bool = False,
    env: dict[str, str] | None = None,
) -> AsyncIterator[System]:
    async with fresh_database(postgres_url) as database_url:
        topics = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
        await ensure_topics(kafka_bootstrap, topics)
        merchant_file = work / "merchants.yaml"
        merchant_file.write_text(yaml.safe_dump(merchants))
        system = System(
            kafka_bootstrap=kafka_bootstrap,
            database_url=database_url,
            log_dir=work / "logs",
            bin_dir=Path(sys.executable).parent,
            topic_prefix=topics.prefix,
            with_portal=with_portal,
            extra_env={
                "PAYMENTS_SANDBOX": "1",
                "PAYMENTS_MERCHANT_CONFIG": str(merchant_file),
                "PAYMENT_INTAKE_MERCHANT_CONFIG": str(merchant_file),
                "DEMO_PORTAL_MERCHANT_CONFIG": str(merchant_file),
                **(env or {}),
            },
        )
        # Free ports, never the defaults: a developer's `make run` may be holding them.
        system.ports = {service: free_port() for service in system.ports}
        system.start()
        try:
            yield system
        finally:
            unclean = system.stop_cleanly()
            assert not unclean, f"services did not stop cleanly on SIGTERM:\n{unclean}"


# The merchants of the browser tests: one portal per seed page, an account per test.
BROWSER_MERCHANTS = {
    "default": "full-payment-portal",
    "merchants": {
        "contoso-supply": {
            "policy": "full-payment-portal",
            "accounts": ["C-10042", "C-10043", "C-10044", "C-10045", "C-10046", "C-10047"],
        },
        "northwind-labs": {
            "policy": "partial-multi-portal",
            "accounts": [
                "A-20077",
                "A-20078",
                "A-20079",
                "A-20080",
                "A-20081",
                "A-20082",
                "A-20083",
                "A-30011",
            ],
            # The demo merchant file's details, so the page shows each channel's lines.
            "remittance": {
                "check": {
                    "payee": "Northwind Labs Inc.",
                    "mailing_address": {
                        "name": "Northwind Labs Inc., Accounts Receivable",
                        "line1": "PO Box 7701",
                        "city": "Chicago",
                        "region": "IL",
                        "postal_code": "60680",
                        "country": "US",
                    },
                },
                "ach": {
                    "bank_name": "First Demo Bank",
                    "account_name": "Northwind Labs Inc.",
                    "account_number": "000123456789",
                    "routing_number": "021000021",
                },
                "wire": {
                    "bank_name": "First Demo Bank",
                    "account_name": "Northwind Labs Inc.",
                    "account_number": "000123456789",
                    "routing_number": "021000021",
                    "swift_bic": "FDBKUS33",
                },
            },
        },
    },
}
