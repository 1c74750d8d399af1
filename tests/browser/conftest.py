"""The whole system and the reference portal as OS processes, driven by Debian's chromium.

One system for the module (starting it is most of the cost); each test pays on its own
accounts, so tests do not see each other's invoices. Playwright never downloads a
browser: chromium comes from apt (installed here when missing) and is passed by path.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from payments_contracts.topics import TopicRegistry
from portal_support import BROWSER_MERCHANTS as MERCHANTS
from portal_support import running_system
from system import System

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


@pytest.fixture(scope="session")
def chromium() -> str:
    import runtime

    return runtime.require_tool("chromium", "chromium")


@pytest.fixture(scope="module")
async def portal_system(
    kafka_bootstrap: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[System]:
    async with running_system(
        kafka_bootstrap,
        postgres_url,
        tmp_path_factory.mktemp("portal"),
        MERCHANTS,
        with_portal=True,
        env={"DEMO_PORTAL_POLL_INTERVAL_MS": "1000"},
    ) as system:
        yield system


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


Snap = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
def snap(request: pytest.FixtureRequest) -> Snap:
    """Keeps a screenshot of one checked state, named after the test and the state."""

    async def take(tab: Page, state: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await tab.screenshot(path=SCREENSHOTS / f"{request.node.name}--{state}.png", full_page=True)

    return take
