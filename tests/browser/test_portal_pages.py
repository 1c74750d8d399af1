"""The seed pages' examples, clicked through in a real browser against the running system.

Seed 000: the USD 1,250.00 invoice paid by guest checkout (Pay, Guest Checkout, billing
address, card page, Pay Now, Pending, Paid), and the two errors that keep the dialog
shut; account PAY, gone at $0.00 without a reload and held back (no tab opened) while an
invoice is pending; one Pay button on the invoice detail. Seed 003: a partial payment,
two invoices paid together, the above-balance error, remittance details on labelled
lines, MAKE A PAYMENT on the invoice detail, the card frame inside the dialog, Done after
paying, and an account that must pay through its distributor. And the portal's /metrics
and icon. Each checked state is kept as a screenshot in .artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from prometheus_client.parser import text_string_to_metric_families

import erp_invoices
from kafka_tools import eventually, produce
from payments_contracts.erp import ErpInvoiceUpserted
from payments_contracts.topics import TopicRegistry
from payments_platform.sandbox import demo_api_key
from payments_portal_client import PayerPortal
from payments_portal_client import commands as build
from portal_support import BROWSER_MERCHANTS
from system import System

# The first test's setup may install chromium with apt on a fresh machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def erp_invoice(account: str, number: str, amount: str, country: str = "US") -> ErpInvoiceUpserted:
    return erp_invoices.erp_invoice(
        account,
        number,
        total=amount,
        country=country,
        order_number=f"SO-{number[-4:]}",
        po_number=f"PO-{number[-4:]}",
        invoice_date=date(2026, 10, 15),
        due_date=date(2026, 11, 14),
    )


def _portal_key(account: str) -> str:
    """The sandbox demo key of the merchant whose portal shows `account`."""
    merchant = next(name for name, m in BROWSER_MERCHANTS["merchants"].items() if account in m["accounts"])
    return demo_api_key(merchant)


async def invoice_state(system: System, account: str, number: str) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {_portal_key(account)}"}
    async with httpx.AsyncClient(base_url=system.url("status-projector"), headers=headers) as client:
        response = await client.get(f"/v1/accounts/{account}/invoices/{number}")
        return response.json() if response.status_code == 200 else {}


async def seeded(
    system: System, topics: TopicRegistry, account: str, invoices: list[tuple[str, str, str]], until: str
) -> None:
    """ERP invoices (number, amount, country) in, and each shows `until` in the read model."""
    await produce(
        system.kafka_bootstrap,
        topics.erp_invoices.name,
        [erp_invoice(account, number, amount, country) for number, amount, country in invoices],
    )
    for number, _, _ in invoices:
        await eventually(
            lambda number=number: invoice_state(system, account, number),
            lambda s: s.get("pay_status") == until or s.get("not_payable_reason") == until,
            timeout=30,
            interval=0.2,
            what=f"{account}/{number} to be {until}",
        )


def row(page: Page, number: str):  # type: ignore[no-untyped-def]
    return page.locator(f'tr[data-row="{number}"]')


async def fill_billing(page: Page) -> None:
    dialog = page.locator("#pay-dialog")
    await dialog.get_by_label("Email").fill("ap@contoso.example")
    await dialog.get_by_label("Street Address").fill("1 Harbor Way")
    await dialog.get_by_label("Address 2").fill("Suite 400")
    await dialog.get_by_label("Country", exact=True).select_option("US")
    await dialog.get_by_label("Postal Code").fill("02110")
    await dialog.get_by_label("Country Code").fill("+1")
    await dialog.get_by_label("Phone Number").fill("6175550100")


# --- seed 000 ---------------------------------------------------------------------------


async def test_seed_000_pay_the_1250_invoice_by_guest_checkout_pending_then_paid(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(portal_system, topics_of, "C-10042", [("INV-1001", "1250.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/C-10042")
    invoice = row(page, "INV-1001")
    await expect(invoice.locator(".balance")).to_have_text("$1,250.00")
    # Seed 000: the account PAY button shows while the account has a balance.
    await expect(page.locator("#balance-card").get_by_role("button", name="PAY")).to_be_visible()

    await invoice.get_by_role("button", name="Pay").click()
    dialog = page.locator("#pay-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#dlg-invoice")).to_have_text("INV-1001")
    await expect(dialog.locator("#dlg-balance")).to_have_text("$1,250.00")

    await dialog.get_by_role("tab", name="Guest Checkout").click()
    await fill_billing(page)
    await dialog.get_by_role("button", name="Continue").click()
    await dialog.get_by_label("Name on Card").fill("Pat Buyer")
    await dialog.get_by_role("button", name="Enter card details").click()

    card = page.frame_locator("#card-frame")
    await expect(card.get_by_text("INV-1001")).to_be_visible()
    await expect(card.get_by_text("1,250.00 USD")).to_be_visible()
    await card.get_by_label("Card number").fill("4000 0000 0000 0002")
    await card.get_by_label("Expiry").fill("12 / 29")
    await card.get_by_label("CVC").fill("123")
    await card.get_by_role("button", name="Pay Now").click()

    await expect(dialog).to_be_hidden()
    await expect(invoice.locator(".pay-cell")).to_have_text("Pending")
    await expect(invoice.locator(".pay-cell")).to_have_text("Paid", timeout=30_000)
    await expect(invoice.locator(".balance")).to_have_text("$0.00")


async def test_seed_000_not_sent_and_already_pending_show_an_error_instead_of_the_dialog(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    provider = portal_system.url("sandbox-provider")
    portal = portal_system.url("demo-portal")

    # An invoice the provider cannot register yet: not sent for payment processing.
    async with httpx.AsyncClient(base_url=provider) as sandbox:
        armed = await sandbox.post("/sandbox/faults", json={"target": "registration", "mode": "error"})
        assert armed.status_code == 200, armed.text
        try:
            await seeded(
                portal_system, topics_of, "C-10043", [("INV-1101", "410.00", "US")], "not_registered"
            )
            await page.goto(f"{portal}/accounts/C-10043")
            await row(page, "INV-1101").get_by_role("button", name="Pay").click()
            await expect(page.locator("#notice")).to_have_text(
                "Invoice INV-1101 has not been sent for payment processing yet. Please try again later."
            )
            await expect(page.locator("#pay-dialog")).to_be_hidden()
        finally:
            await sandbox.delete("/sandbox/faults")

    # A payment already pending (opened elsewhere, e.g. another tab): the detail view's Pay.
    await seeded(portal_system, topics_of, "C-10043", [("INV-1102", "95.00", "US")], until="payable")
    elsewhere = build.pay_invoice("C-10043", "INV-1102", PayerPortal())
    await produce(portal_system.kafka_bootstrap, topics_of.payments_commands.name, [elsewhere])
    await eventually(
        lambda: invoice_state(portal_system, "C-10043", "INV-1102"),
        lambda s: s.get("pay_status") == "pending",
        timeout=30,
        interval=0.2,
        what="INV-1102 pending",
    )
    await page.goto(f"{portal}/accounts/C-10043/invoices/INV-1102")
    await page.locator("section.detail").get_by_role("button", name="Pay", exact=True).click()
    await expect(page.locator("#notice")).to_have_text(
        "A payment against invoice INV-1102 is already pending."
    )
    await expect(page.locator("#pay-dialog")).to_be_hidden()


async def test_seed_000_the_portal_tab_opens_the_payer_portal_in_a_new_tab(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(portal_system, topics_of, "C-10044", [("INV-1201", "310.40", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/C-10044")
    invoice = row(page, "INV-1201")
    await invoice.get_by_role("button", name="Pay").click()
    dialog = page.locator("#pay-dialog")
    await dialog.get_by_role("tab", name="Portal").click()
    async with page.context.expect_page() as opened:
        await dialog.get_by_role("button", name="Open Portal").click()
    portal_tab = await opened.value
    await expect(portal_tab.get_by_text("Payer portal")).to_be_visible()
    await expect(portal_tab.get_by_text("INV-1201")).to_be_visible()
    await expect(dialog).to_be_hidden()
    await expect(invoice.locator(".pay-cell")).to_have_text("Pending")

    await portal_tab.get_by_role("button", name="Pay with saved card").click()
    await expect(portal_tab.get_by_text("Payment received")).to_be_visible()
    await portal_tab.close()
    await expect(invoice.locator(".pay-cell")).to_have_text("Paid", timeout=30_000)


# --- seed 003 ---------------------------------------------------------------------------


async def pay_selected(page: Page, *numbers: str) -> None:
    for number in numbers:
        await row(page, number).get_by_role("checkbox").check()
    await page.get_by_role("button", name="PAY SELECTED").click()
    await expect(page.locator("#selected-dialog")).to_be_visible()


async def pay_on_card_page(page: Page) -> None:
    card = page.frame_locator("#sel-card-frame")
    await card.get_by_label("Card number").fill("4000 0000 0000 0002")
    await card.get_by_role("button", name="Pay Now").click()
    await expect(page.locator("#confirmation")).to_have_text("Your payment has been submitted successfully.")


async def test_seed_003_a_partial_payment_leaves_the_invoice_partially_paid(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(portal_system, topics_of, "A-20077", [("INV-2001", "980.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20077")
    await pay_selected(page, "INV-2001")
    dialog = page.locator("#selected-dialog")
    await dialog.get_by_label("Payment amount for INV-2001").fill("500.00")
    await expect(dialog.locator("#sel-total")).to_have_text("$500.00")
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await pay_on_card_page(page)
    await dialog.get_by_role("button", name="Done").click()

    invoice = row(page, "INV-2001")
    await expect(invoice.locator(".pay-cell")).to_have_text("Pending")
    await expect(invoice.locator(".pay-cell")).to_have_text("Partially paid", timeout=30_000)
    await expect(invoice.locator(".balance")).to_have_text("$480.00")
    await expect(invoice.get_by_role("checkbox")).to_be_enabled()
    # Seed 003 has no account PAY button: invoices are selected and paid.
    await expect(page.locator("#balance-card").get_by_role("button")).to_have_count(0)


async def test_seed_003_two_invoices_paid_together_in_full_after_remittance_details(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(
        portal_system,
        topics_of,
        "A-20078",
        [("INV-2101", "980.00", "US"), ("INV-2102", "700.00", "US")],
        until="payable",
    )
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20078")
    await pay_selected(page, "INV-2101", "INV-2102")
    dialog = page.locator("#selected-dialog")
    # Several invoices: each is paid in full, so there is no amount to type.
    await expect(dialog.locator("input.amount")).to_have_count(0)
    await expect(dialog.locator("#sel-total")).to_have_text("$1,680.00")
    await expect(dialog.locator("#several-note")).to_be_visible()

    await dialog.get_by_label("ACH").check()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await expect(dialog.locator("#remittance")).to_contain_text("A-20078 INV-2101 INV-2102")

    await dialog.get_by_label("Credit card").check()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await pay_on_card_page(page)
    await dialog.get_by_role("button", name="Done").click()
    for number in ("INV-2101", "INV-2102"):
        await expect(row(page, number).locator(".pay-cell")).to_have_text("Paid", timeout=30_000)


async def test_seed_003_an_amount_above_the_balance_is_refused(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(portal_system, topics_of, "A-20079", [("INV-2201", "980.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20079")
    await pay_selected(page, "INV-2201")
    dialog = page.locator("#selected-dialog")
    await dialog.get_by_label("Payment amount for INV-2201").fill("1000.00")
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await expect(dialog.locator(".dialog-error")).to_have_text(
        "You cannot pay an amount above the total amount due of invoice INV-2201."
    )
    await expect(page.locator("#sel-card-frame")).to_be_hidden()
    await expect(row(page, "INV-2201").locator(".pay-cell")).to_have_text("Unpaid")


async def test_seed_003_an_account_in_a_distributor_country_is_sent_to_its_distributor(
    page: Page, portal_system: System, topics_of: TopicRegistry
) -> None:
    await seeded(portal_system, topics_of, "A-30011", [("INV-3001", "450.00", "CA")], until="restricted")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-30011")
    message = "Customers in your country pay their invoices through their distributor."
    await expect(page.get_by_role("note")).to_contain_text(message)
    invoice = row(page, "INV-3001")
    await expect(invoice.locator(".pay-cell")).to_contain_text("Not payable")
    await expect(invoice.locator(".pay-cell")).to_contain_text("contact your distributor")
    await expect(invoice.get_by_role("checkbox")).to_be_disabled()


# --- issue 23: the detail views, account PAY, the dialog's layout and wording --------------


Snap = Callable[[Page, str], Awaitable[None]]


async def test_seed_000_account_pay_hides_once_the_balance_is_paid_without_a_reload(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(portal_system, topics_of, "C-10045", [("INV-1301", "200.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/C-10045")
    account_pay = page.locator("#balance-card").get_by_role("button", name="PAY")
    await expect(account_pay).to_be_visible()
    await snap(page, "balance-with-pay")

    async with page.context.expect_page() as opened:
        await account_pay.click()
    portal_tab = await opened.value
    await expect(portal_tab.get_by_text("Payer portal")).to_be_visible()
    await portal_tab.get_by_role("button", name="Pay with saved card").click()
    await expect(portal_tab.get_by_text("Payment received")).to_be_visible()
    await portal_tab.close()

    # Seed 000: PAY shows only while the balance is above $0.00; no reload in between.
    await expect(row(page, "INV-1301").locator(".pay-cell")).to_have_text("Paid", timeout=30_000)
    await expect(page.locator("#balance-card .balance-value")).to_have_text("$0.00")
    await expect(page.locator("#balance-card").get_by_role("button")).to_have_count(0)
    await snap(page, "paid-no-pay")


async def test_seed_000_account_pay_is_not_offered_while_an_invoice_is_pending_and_opens_no_blank_tab(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    portal = portal_system.url("demo-portal")
    await seeded(
        portal_system,
        topics_of,
        "C-10046",
        [("INV-1401", "150.00", "US"), ("INV-1402", "80.00", "US")],
        until="payable",
    )
    # A page that has not caught up: its poll fails, so it still offers PAY.
    await page.route("**/api/accounts/C-10046/rows", lambda route: route.abort())
    await page.goto(f"{portal}/accounts/C-10046")
    account_pay = page.locator("#balance-card").get_by_role("button", name="PAY")
    await expect(account_pay).to_be_visible()

    elsewhere = build.pay_invoice("C-10046", "INV-1401", PayerPortal())
    await produce(portal_system.kafka_bootstrap, topics_of.payments_commands.name, [elsewhere])
    await eventually(
        lambda: invoice_state(portal_system, "C-10046", "INV-1401"),
        lambda s: s.get("pay_status") == "pending",
        timeout=30,
        interval=0.2,
        what="INV-1401 pending",
    )
    opened: list[Page] = []

    def on_page(tab: Page) -> None:
        opened.append(tab)

    page.context.on("page", on_page)
    await account_pay.click()
    refused = "A payment against invoice INV-1401 is already pending."
    await expect(page.locator("#notice")).to_have_text(refused)
    page.context.remove_listener("page", on_page)
    assert opened == [], f"a tab was opened for a payment the portal refuses: {[p.url for p in opened]}"
    await snap(page, "refused-without-a-tab")

    # Once the page catches up it stops offering PAY, and a fresh page never offers it.
    await page.unroute("**/api/accounts/C-10046/rows")
    await expect(page.locator("#balance-card").get_by_role("button")).to_have_count(0)
    await page.reload()
    await expect(row(page, "INV-1401").locator(".pay-cell")).to_have_text("Pending")
    await expect(page.locator("#balance-card .balance-value")).to_have_text("$230.00")
    await expect(page.locator("#balance-card").get_by_role("button")).to_have_count(0)
    await expect(page.locator("#balance-card .balance-note")).to_have_text(refused)
    await snap(page, "pending-no-pay")


async def test_seed_000_the_invoice_detail_shows_one_pay_button(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(portal_system, topics_of, "C-10047", [("INV-1501", "640.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/C-10047/invoices/INV-1501")
    await expect(page.locator("section.detail .balance")).to_have_text("$640.00")
    await expect(page.get_by_role("button", name="Pay", exact=True)).to_have_count(1)
    await snap(page, "one-pay-button")
    await page.get_by_role("button", name="Pay", exact=True).click()
    dialog = page.locator("#pay-dialog")
    await expect(dialog.locator("#dlg-invoice")).to_have_text("INV-1501")
    await expect(dialog.locator("#dlg-balance")).to_have_text("$640.00")
    await snap(page, "dialog-open")


async def test_seed_003_make_a_payment_on_the_invoice_detail_pays_part_of_it(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(portal_system, topics_of, "A-20080", [("INV-2301", "980.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20080/invoices/INV-2301")
    detail = page.locator("section.detail")
    await expect(detail.locator(".balance")).to_have_text("$980.00")
    await snap(page, "detail")
    await detail.get_by_role("button", name="MAKE A PAYMENT").click()

    # Seed 003: the amount due and the invoice number are pre-populated; a part may be paid.
    dialog = page.locator("#selected-dialog")
    await expect(dialog).to_be_visible()
    amount = dialog.get_by_label("Payment amount for INV-2301")
    await expect(amount).to_have_value("980.00")
    await amount.fill("300.00")
    await expect(dialog.locator("#sel-total")).to_have_text("$300.00")
    await snap(page, "dialog-prefilled")
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await pay_on_card_page(page)
    await snap(page, "confirmed")
    await dialog.get_by_role("button", name="Done").click()

    await expect(detail.locator(".status-cell")).to_have_text("Partially paid", timeout=30_000)
    await expect(detail.locator(".balance")).to_have_text("$680.00")
    await expect(detail.get_by_role("button", name="MAKE A PAYMENT")).to_be_visible()
    await snap(page, "partially-paid")


async def test_seed_003_the_card_frame_fits_inside_the_dialog(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(portal_system, topics_of, "A-20081", [("INV-2401", "120.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20081")
    await pay_selected(page, "INV-2401")
    dialog = page.locator("#selected-dialog")
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    frame = page.locator("#sel-card-frame")
    await expect(frame).to_be_visible()
    await expect(page.frame_locator("#sel-card-frame").get_by_role("button", name="Pay Now")).to_be_visible()
    await snap(page, "card-frame")

    box = await dialog.bounding_box()
    assert box is not None
    for part in (frame, dialog.locator("table.pay-lines"), dialog.locator(".dialog-foot")):
        inner = await part.bounding_box()
        assert inner is not None
        assert box["x"] < inner["x"] and inner["x"] + inner["width"] < box["x"] + box["width"], (box, inner)
    overflow = await dialog.evaluate("d => d.scrollWidth - d.clientWidth")
    assert overflow == 0, f"the dialog scrolls sideways by {overflow}px"


async def test_seed_003_after_a_successful_payment_the_dialog_offers_done_not_cancel(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(portal_system, topics_of, "A-20082", [("INV-2501", "75.00", "US")], until="payable")
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20082")
    await pay_selected(page, "INV-2501")
    dialog = page.locator("#selected-dialog")
    await expect(dialog.get_by_role("button", name="Cancel")).to_be_visible()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await pay_on_card_page(page)
    await expect(dialog.get_by_role("button", name="Cancel")).to_have_count(0)
    await expect(dialog.get_by_role("button", name="Done")).to_be_visible()
    await snap(page, "done")
    await dialog.get_by_role("button", name="Done").click()
    await expect(dialog).to_be_hidden()
    await expect(row(page, "INV-2501").locator(".pay-cell")).to_have_text("Paid", timeout=30_000)


async def test_seed_003_remittance_details_in_portal_money_on_labelled_lines(
    page: Page, portal_system: System, topics_of: TopicRegistry, snap: Snap
) -> None:
    await seeded(
        portal_system,
        topics_of,
        "A-20083",
        [("INV-2601", "980.00", "US"), ("INV-2602", "700.00", "US")],
        until="payable",
    )
    await page.goto(f"{portal_system.url('demo-portal')}/accounts/A-20083")
    await pay_selected(page, "INV-2601", "INV-2602")
    await expect(page.locator("#selected-summary")).to_have_text("2 selected · balance $1,680.00")
    dialog = page.locator("#selected-dialog")
    await expect(dialog.locator("#sel-total")).to_have_text("$1,680.00")
    remittance = dialog.locator("#remittance")

    async def lines() -> dict[str, str]:
        terms = await remittance.locator("dt").all_inner_texts()
        values = await remittance.locator("dd").all_inner_texts()
        return dict(zip(terms, values, strict=True))

    await dialog.get_by_label("ACH").check()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await expect(remittance.locator("dt").first).to_be_visible()
    assert await lines() == {
        "Amount": "$1,680.00",
        "Reference": "A-20083 INV-2601 INV-2602",
        "Bank": "First Demo Bank",
        "Account name": "Northwind Labs Inc.",
        "Account number": "000123456789",
        "Routing number": "021000021",
    }
    await expect(remittance).not_to_contain_text("USD")
    await snap(page, "ach")

    await dialog.get_by_label("Wire").check()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await expect(remittance.locator("dt", has_text="SWIFT/BIC")).to_be_visible()
    assert (await lines())["SWIFT/BIC"] == "FDBKUS33"
    await snap(page, "wire")

    await dialog.get_by_label("Check").check()
    await dialog.get_by_role("button", name="MAKE PAYMENT").click()
    await expect(remittance.locator("dt", has_text="Payable to")).to_be_visible()
    assert await lines() == {
        "Amount": "$1,680.00",
        "Reference": "A-20083 INV-2601 INV-2602",
        "Payable to": "Northwind Labs Inc.",
        "Mail to": "Northwind Labs Inc., Accounts Receivable\nPO Box 7701\nChicago, IL 60680\nUS",
    }
    await snap(page, "check")


async def test_the_portal_serves_prometheus_metrics_and_a_favicon(
    page: Page, portal_system: System, snap: Snap
) -> None:
    portal = portal_system.url("demo-portal")
    async with httpx.AsyncClient(base_url=portal) as client:
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200, metrics.status_code
        assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
        families = {f.name for f in text_string_to_metric_families(metrics.text)}
        assert {"demo_portal_commands", "demo_portal_outcome_seconds"} <= families, sorted(families)
        favicon = await client.get("/favicon.ico")
        assert favicon.status_code == 200, favicon.status_code
        assert favicon.headers["content-type"].startswith("image/"), favicon.headers

    await page.goto(f"{portal}/accounts/C-10042")
    icon = await page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None, "the page links no icon"
    linked = await page.request.get(f"{portal}{icon}" if icon.startswith("/") else icon)
    assert linked.status == 200 and linked.headers["content-type"].startswith("image/"), linked.headers
    await snap(page, "page-with-icon")
