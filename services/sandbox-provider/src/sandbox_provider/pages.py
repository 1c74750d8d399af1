"""The pages a person sees at the sandbox provider: the hosted card form (guest checkout,
card) and the payer portal. The card fields are never sent anywhere: this is a sandbox,
and Pay Now only tells the ledger to complete the checkout.

An embedding portal learns the result from a `postMessage` to its window (the way
hosted card forms report back), so it can close its dialog.
"""

from __future__ import annotations

import html
import json
from decimal import Decimal

from sandbox_provider.ledger import Checkout

_STYLE = """
body{font-family:-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#1f2933;background:#fff}
.wrap{max-width:420px;margin:0 auto;padding:1.25rem}
.brand{font-size:.75rem;letter-spacing:.08em;text-transform:uppercase;color:#6b7785;margin-bottom:.75rem}
.facts{display:flex;justify-content:space-between;background:#f5f7fa;border-radius:8px;padding:.6rem .8rem;
 margin-bottom:1rem;font-size:.9rem}
.facts b{display:block;font-size:1.05rem}
label{display:block;font-size:.8rem;color:#5b6673;margin-bottom:.7rem}
input{display:block;width:100%;box-sizing:border-box;margin-top:.25rem;font:inherit;padding:.5rem .6rem;
 border:1px solid #cfd6de;border-radius:6px}
.row{display:flex;gap:.75rem}.row label{flex:1}
button{font:inherit;width:100%;padding:.6rem;border:0;border-radius:6px;background:#2f855a;color:#fff;
 font-weight:600;cursor:pointer}
.alt{background:none;color:#6b7785;font-size:.8rem;margin-top:.5rem}
.done{padding:1rem;border-radius:8px;background:#e3f4ea;color:#1e7b4d;font-weight:600}
.failed{background:#fde8e8;color:#a42b2b}
"""

_SCRIPT = """
const checkout = %s;
function tell(status) {
  const target = window.parent !== window ? window.parent : window.opener;
  if (target) target.postMessage({source: "sandbox-provider", status, checkout_id: checkout}, "*");
}
async function finish(action, status, text) {
  document.querySelectorAll("button").forEach((b) => { b.disabled = true; });
  const r = await fetch(`/sandbox/checkouts/${checkout}/${action}`, {method: "POST"});
  const box = document.getElementById("result");
  box.textContent = r.ok ? text : "This checkout is no longer open.";
  box.className = r.ok && status === "succeeded" ? "done" : "done failed";
  document.getElementById("form").hidden = true;
  box.hidden = false;
  if (r.ok) tell(status);
}
"""


def _amount(checkout: Checkout) -> str:
    # The sandbox's own display only; amounts travel as integer minor units.
    return f"{Decimal(checkout.amount_minor).scaleb(-2):,} {html.escape(checkout.currency)}"


def _invoices(checkout: Checkout) -> str:
    return ", ".join(html.escape(str(i["invoice_number"])) for i in checkout.invoices) or "Account balance"


def _page(title: str, checkout: Checkout, form: str) -> str:
    state = "" if checkout.status == "open" else f"This checkout is {html.escape(checkout.status)}."
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body><div class=wrap>"
        f"<div class=brand>Sandbox payments · {title}</div>"
        f"<div class=facts><span>Invoice<b>{_invoices(checkout)}</b></span>"
        f"<span>Amount<b>{_amount(checkout)}</b></span></div>"
        f"<div id=form {'hidden' if state else ''}>{form}</div>"
        f"<div id=result class=done {'' if state else 'hidden'}>{state}</div>"
        f"</div><script>{_SCRIPT % json.dumps(checkout.checkout_id)}</script></body></html>"
    )


def card_page(checkout: Checkout) -> str:
    """The hosted card form. Its inputs have no names and no form posts them."""
    form = (
        "<label>Card number<input inputmode=numeric autocomplete=cc-number placeholder='Card number'>"
        "</label><div class=row><label>Expiry<input autocomplete=cc-exp placeholder='MM / YY'></label>"
        "<label>CVC<input inputmode=numeric autocomplete=cc-csc placeholder='123'></label></div>"
        "<button type=button onclick=\"finish('complete','succeeded','Payment received. Thank you.')\">"
        "Pay Now</button>"
        "<button type=button class=alt onclick=\"finish('fail','failed','Card declined.')\">"
        "Simulate a declined card</button>"
    )
    return _page("Card payment", checkout, form)


def payer_portal_page(checkout: Checkout) -> str:
    form = (
        "<p>Signed in as the account's payer. Saved method: card on file.</p>"
        "<button type=button onclick=\"finish('complete','succeeded','Payment received. You can close this"
        " tab and return to the portal.')\">Pay with saved card</button>"
        "<button type=button class=alt onclick=\"finish('abandon','expired','Payment abandoned.')\">"
        "Leave without paying</button>"
    )
    return _page("Payer portal", checkout, form)
