"""The whole system and the reference portal as OS processes, driven by Debian's chromium.

One system for the module (starting it is most of the cost); each test pays on its own
accounts, so tests do not see each other's invoices. Playwright never downloads a
browser: chromium comes from apt (installed here when missing) and is passed by path.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import yaml
from playwright.async_api import BrowserContext, Page, async_playwright

from payments_shared.topics import TopicRegistry, ensure_topics
from system import System, free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
]

# The merchants of the browser tests: one portal per seed page, an account per test.
MERCHANTS = {
    "default": "full-payment-portal",
    "merchants": {
        "contoso-supply": {
            "policy": "full-payment-portal",
            "accounts": ["C-10042", "C-10043"],
        },
        "northwind-labs": {
            "policy": "partial-multi-portal",
            "accounts": ["A-20077", "A-20078", "A-20079", "A-30011"],
        },
    },
}


@pytest.fixture(scope="session")
def chromium() -> str:
    import runtime

    return runtime.require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
async def portal_system(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    topics = TopicRegistry(prefix=f"t{uuid.uuid4().hex[:8]}.")
    await ensure_topics(kafka_bootstrap, topics)
    work = tmp_path_factory.mktemp("portal")
    merchants = work / "merchants.yaml"
    merchants.write_text(yaml.safe_dump(MERCHANTS))
    system = System(
        kafka_bootstrap=kafka_bootstrap,
        database_url=postgres_url.rpartition("/")[0] + f"/{name}",
        log_dir=work / "logs",
        bin_dir=Path(sys.executable).parent,
        topic_prefix=topics.prefix,
        with_portal=True,
        extra_env={
            "PAYMENTS_SANDBOX": "1",
            "PAYMENT_INTAKE_MERCHANT_CONFIG": str(merchants),
            "DEMO_PORTAL_MERCHANT_CONFIG": str(merchants),
            "DEMO_PORTAL_POLL_INTERVAL_MS": "1000",
            "PAYMENTS_LOG_LEVEL": "INFO",
        },
    )
    system.ports = {service: free_port() for service in system.ports}
    system.start()
    try:
        yield system
    finally:
        codes = system.stop()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        bad = {service: code for service, code in codes.items() if code != 0}
        assert not bad, f"services did not stop cleanly: {bad}\n" + "\n".join(system.tail(s) for s in bad)


@pytest.fixture(scope="module")
def topics_of(portal_system: System) -> TopicRegistry:
    return TopicRegistry(portal_system.topic_prefix)


@pytest.fixture(scope="module")
async def browser_context(chromium: str) -> AsyncIterator[BrowserContext]:
    profile = tempfile.mkdtemp(prefix="portal-chromium-")
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            profile,
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 760},
        )
        try:
            yield context
        finally:
            await context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
async def page(browser_context: BrowserContext, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh tab; its last state is saved as a screenshot whatever the outcome."""
    tab = await browser_context.new_page()
    tab.set_default_timeout(15_000)
    try:
        yield tab
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=SCREENSHOTS / f"{request.node.name}.png", full_page=True)
        await tab.close()
