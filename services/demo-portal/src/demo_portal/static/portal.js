// The portal page: Pay buttons, the Pay dialog (seed 000), PAY SELECTED (seed 003), and a
// poll of the read model so a row goes Pending then Paid without a reload.
(() => {
  "use strict";
  const body = document.body;
  const account = body.dataset.account;
  const pollMs = Number(body.dataset.poll || 1500);
  const state = { payment: null, done: false, lines: [] };

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  async function api(path, payload) {
    const init = payload === undefined ? { method: "POST" } : {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload),
    };
    const response = await fetch(`/api/accounts/${encodeURIComponent(account)}${path}`, init);
    return response.json();
  }

  function notice(message) {
    const box = $("#notice");
    box.textContent = message;
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  }

  function clearNotice() { $("#notice").hidden = true; }

  // Before an outcome the footer button gives up the payment; after it, there is nothing
  // left to cancel and the button only closes the dialog.
  function footLabel(dialog, label) { $("[data-action=close]", dialog).textContent = label; }

  function dialogError(dialog, message) {
    const box = $(".dialog-error", dialog);
    box.textContent = message || "";
    box.hidden = !message;
  }

  // --- money: the page adds and formats none itself ---------------------------------------
  // A total is asked of the server (one formatter, integer minor units); only the answer
  // to the latest question is shown, so a slow early answer cannot overwrite a later one.
  // The poll re-checks the selection every few seconds: the same amounts are not asked again.
  const asked = {};
  const shownFor = {};
  async function showTotal(key, amounts, show) {
    const question = JSON.stringify(amounts);
    if (shownFor[key] === question) return;
    const n = (asked[key] = (asked[key] || 0) + 1);
    shownFor[key] = null;
    let answer = null;
    try {
      answer = amounts.length ? await api("/total", { amounts }) : { ok: false };
    } catch (err) {
      answer = null;
    }
    if (asked[key] !== n) return;
    // A question that got no answer (network) is asked again by the next change or poll.
    shownFor[key] = answer ? question : null;
    show(answer && answer.ok ? answer.text : null);
  }

  function forgetTotal(key) {
    asked[key] = (asked[key] || 0) + 1;
    shownFor[key] = null;
  }

  // --- the poll ---------------------------------------------------------------------------
  // Swaps in the server's rendering of a part only when it differs, so a button the
  // customer is about to press (or a box they ticked) is not replaced by its own copy.
  function renderInto(el, html) {
    if (!el) return;
    const next = el.cloneNode(false);
    const t = document.createElement("template");
    t.innerHTML = html;
    next.append(t.content);
    if (!next.isEqualNode(el)) el.replaceChildren(...next.childNodes);
  }

  async function refresh() {
    let data;
    try {
      data = await (await fetch(`/api/accounts/${encodeURIComponent(account)}/rows`)).json();
    } catch (err) {
      return;
    }
    for (const row of data.rows) {
      for (const el of $$(`[data-row="${CSS.escape(row.invoice_number)}"]`)) {
        renderInto($(".pay-cell", el), row.cell_html);
        renderInto($(".select-cell", el), row.select_html);
        renderInto($(".status-cell", el), row.status_html);
        renderInto($(".detail-action", el), row.action_html);
        el.dataset.cell = row.cell;
        $$(".balance", el).forEach((b) => { b.textContent = row.balance; });
      }
    }
    renderInto($("#balance-card"), data.balance_card_html);
    updateSelection();
  }

  function markPending(numbers) {
    const badge = '<span class="badge badge-pending">Pending</span>';
    for (const n of numbers) {
      for (const el of $$(`[data-row="${CSS.escape(n)}"]`)) {
        renderInto($(".pay-cell", el), badge);
        renderInto($(".status-cell", el), badge);
        renderInto($(".detail-action", el), "");
        renderInto($(".select-cell", el), '<input type="checkbox" disabled>');
        el.dataset.cell = "pending";
      }
    }
    updateSelection();
  }

  function schedulePoll() {
    setTimeout(async () => { await refresh(); schedulePoll(); }, pollMs);
  }

  // --- seed 000: the Pay Invoice dialog ----------------------------------------------
  const payDialog = $("#pay-dialog");

  function showTab(name) {
    $$("[role=tab]", payDialog).forEach((t) => t.setAttribute("aria-selected", String(t.dataset.tab === name)));
    $$("[data-panel]", payDialog).forEach((p) => { p.hidden = p.dataset.panel !== name; });
  }

  function openPayDialog(checked) {
    state.payment = null;
    state.done = false;
    state.invoice = checked.invoice_number;
    $("#dlg-invoice").textContent = checked.invoice_number;
    $("#dlg-balance").textContent = checked.balance;
    $("#billing-form").reset();
    $("#billing-form").hidden = false;
    $("#name-form").reset();
    $("#name-form").hidden = false;
    $("#card-step").hidden = true;
    const frame = $("#card-frame");
    frame.hidden = true;
    frame.removeAttribute("src");
    dialogError(payDialog, "");
    footLabel(payDialog, "Cancel");
    showTab("guest");
    payDialog.showModal();
  }

  function billing(form) {
    const f = new FormData(form);
    const value = (k) => String(f.get(k) || "").trim();
    return {
      email: value("email"), street: value("street"), address_line2: value("address_line2") || null,
      country: value("country"), postal_code: value("postal_code"),
      phone_country_code: value("phone_country_code"), phone_number: value("phone_number"),
    };
  }

  function missing(form) {
    return $$("[required]", form).filter((el) => !String(el.value).trim());
  }

  async function onPay(number) {
    clearNotice();
    const checked = await api(`/invoices/${encodeURIComponent(number)}/check`);
    if (!checked.ok) {
      notice(checked.message);
      return;
    }
    openPayDialog(checked);
  }

  function wirePayDialog() {
    $$("[role=tab]", payDialog).forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
    $("#billing-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const empty = missing(e.target);
      empty.forEach((el) => el.setAttribute("aria-invalid", "true"));
      if (empty.length) {
        dialogError(payDialog, "Fill in the highlighted billing fields.");
        return;
      }
      dialogError(payDialog, "");
      e.target.hidden = true;
      $("#card-step").hidden = false;
      $("#name-form input").focus();
    });
    $("#name-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = String(new FormData(e.target).get("name_on_card") || "").trim();
      if (!name) {
        dialogError(payDialog, "Enter the name as it appears on your card.");
        return;
      }
      const button = $("button", e.target);
      button.disabled = true;
      const answer = await api("/pay", {
        invoices: [{ invoice_number: state.invoice }], method: "guest_checkout",
        billing: billing($("#billing-form")), name_on_card: name,
      });
      button.disabled = false;
      if (answer.outcome !== "accepted" || !answer.checkout_url) {
        dialogError(payDialog, answer.message || "The payment could not be started.");
        return;
      }
      dialogError(payDialog, "");
      state.payment = answer;
      e.target.hidden = true;
      const frame = $("#card-frame");
      frame.src = answer.checkout_url;
      frame.hidden = false;
    });
    $("#open-portal").addEventListener("click", async () => {
      const answer = await api("/pay", { invoices: [{ invoice_number: state.invoice }], method: "payer_portal" });
      if (answer.outcome !== "accepted" || !answer.checkout_url) {
        dialogError(payDialog, answer.message || "The payer portal could not be opened.");
        return;
      }
      openPayerPortal(answer.checkout_url);
      state.done = true;
      payDialog.close();
      markPending([state.invoice]);
    });
    $("[data-action=close]", payDialog).addEventListener("click", () => closeDialog(payDialog));
  }

  // --- seed 003: PAY SELECTED and Make a Payment ------------------------------------------
  const selectedDialog = $("#selected-dialog");

  function selectedBoxes() { return $$("input.select:checked"); }

  function updateSelection() {
    const button = $("[data-action=pay-selected]");
    if (!button) return;
    const boxes = selectedBoxes();
    button.disabled = boxes.length === 0;
    const summary = $("#selected-summary");
    if (!boxes.length) {
      forgetTotal("selection");
      summary.textContent = "Select unpaid or partially-paid invoices to pay.";
      return;
    }
    const amounts = boxes.map((b) => ({ amount: b.dataset.balance, currency: b.dataset.currency }));
    showTotal("selection", amounts, (text) => {
      summary.textContent = `${boxes.length} selected` + (text ? ` · balance ${text}` : "");
    });
  }

  function selectedLines() {
    return state.lines.map((line) => {
      const input = $(`input[data-line="${CSS.escape(line.invoice_number)}"]`, selectedDialog);
      return { invoice_number: line.invoice_number, amount: input ? input.value.trim() : null };
    });
  }

  function updateSelectedTotal() {
    const typed = selectedLines();
    const amounts = state.lines.map((l, i) => ({ amount: typed[i].amount ?? l.balance, currency: l.currency }));
    showTotal("dialog", amounts, (text) => { $("#sel-total").textContent = text || "—"; });
  }

  // PAY SELECTED with the ticked invoices, or MAKE A PAYMENT on one invoice's detail view.
  async function openMakePayment(numbers) {
    clearNotice();
    const checks = await Promise.all(numbers.map((n) => api(`/invoices/${encodeURIComponent(n)}/check`)));
    const refused = checks.find((c) => !c.ok);
    if (refused) {
      notice(refused.message);
      return;
    }
    state.lines = checks.map((c) => ({
      invoice_number: c.invoice_number, balance: c.balance_plain, text: c.balance, currency: c.currency,
    }));
    state.payment = null;
    state.done = false;
    const several = state.lines.length > 1;
    const tbody = $(".pay-lines tbody", selectedDialog);
    tbody.innerHTML = "";
    for (const line of state.lines) {
      const tr = document.createElement("tr");
      const amount = several
        ? `<td class="num">${line.text}</td>`
        : `<td class="num"><input class="amount" inputmode="decimal" aria-label="Payment amount for ${line.invoice_number}"
             data-line="${line.invoice_number}" value="${line.balance}"></td>`;
      tr.innerHTML = `<td>${line.invoice_number}</td><td class="num">${line.text}</td>${amount}`;
      tbody.appendChild(tr);
    }
    $$("input.amount", selectedDialog).forEach((i) => i.addEventListener("input", updateSelectedTotal));
    $("#several-note").hidden = !several;
    $("input[name=method][value=card]", selectedDialog).checked = true;
    $(".methods", selectedDialog).hidden = false;
    $("#make-payment").hidden = false;
    $("#make-payment").disabled = false;
    const frame = $("#sel-card-frame");
    frame.hidden = true;
    frame.removeAttribute("src");
    $("#remittance").hidden = true;
    $("#confirmation").hidden = true;
    dialogError(selectedDialog, "");
    footLabel(selectedDialog, "Cancel");
    forgetTotal("dialog");
    updateSelectedTotal();
    selectedDialog.showModal();
  }

  function wireSelectedDialog() {
    document.addEventListener("change", (e) => { if (e.target.matches("input.select")) updateSelection(); });
    $("#make-payment").addEventListener("click", async (e) => {
      const choice = $("input[name=method]:checked", selectedDialog).value;
      const several = state.lines.length > 1;
      const payload = {
        invoices: several ? state.lines.map((l) => ({ invoice_number: l.invoice_number })) : selectedLines(),
        method: choice === "card" ? "card" : "remittance",
        channel: choice === "card" ? null : choice,
        selected: true,
      };
      e.target.disabled = true;
      const answer = await api("/pay", payload);
      e.target.disabled = false;
      if (answer.outcome === "remittance") {
        dialogError(selectedDialog, "");
        const box = $("#remittance");
        box.innerHTML = answer.remittance_html;
        box.hidden = false;
        return;
      }
      if (answer.outcome !== "accepted" || !answer.checkout_url) {
        $("#remittance").hidden = true;
        dialogError(selectedDialog, answer.message || "The payment could not be started.");
        return;
      }
      dialogError(selectedDialog, "");
      state.payment = answer;
      $(".methods", selectedDialog).hidden = true;
      e.target.hidden = true;
      $$("input.amount", selectedDialog).forEach((i) => { i.readOnly = true; });
      const frame = $("#sel-card-frame");
      frame.src = answer.checkout_url;
      frame.hidden = false;
    });
    $("[data-action=close]", selectedDialog).addEventListener("click", () => closeDialog(selectedDialog));
  }

  // --- both: the provider's card page reports back, cancel, account PAY ---------------------
  function closeDialog(dialog) {
    if (state.payment && !state.done) {
      // The checkout was opened but not paid: cancel it so the invoice is payable again.
      api("/cancel", { payment_id: state.payment.payment_id });
    }
    state.payment = null;
    dialog.close();
  }

  window.addEventListener("message", (e) => {
    const data = e.data || {};
    if (data.source !== "sandbox-provider" || !state.payment) return;
    if (data.status === "succeeded") {
      state.done = true;
      const paid = state.payment.invoice_numbers;
      if (payDialog) {
        payDialog.close();
      } else {
        $("#sel-card-frame").hidden = true;
        $("#confirmation").hidden = false;
        footLabel(selectedDialog, "Done");
        $$("input.select:checked").forEach((b) => { b.checked = false; });
        updateSelection();
      }
      markPending(paid);
    } else if (data.status === "failed") {
      state.done = true;
      const dialog = payDialog || selectedDialog;
      dialogError(dialog, "Your card was declined. The invoice can be paid again.");
      footLabel(dialog, "Close");
    }
  });

  // The payer portal's tab opens only once its address is known: a tab opened before the
  // answer would flash open and shut for every payment the service refuses. A browser
  // that blocks so late a window.open gets a link to press instead.
  function openPayerPortal(url) {
    if (window.open(url, "_blank")) return;
    const link = document.createElement("a");
    link.href = url;
    link.target = "_blank";
    link.textContent = "Open the payer portal";
    const box = $("#notice");
    box.replaceChildren("Your browser kept the payer portal from opening in a new tab. ", link);
    box.hidden = false;
  }

  async function onPayBalance(currency) {
    clearNotice();
    const answer = await api("/pay-balance", { currency });
    if (answer.outcome !== "accepted" || !answer.checkout_url) {
      notice(answer.message || "The payer portal could not be opened.");
      refresh();
      return;
    }
    openPayerPortal(answer.checkout_url);
    markPending(answer.invoice_numbers);
  }

  document.addEventListener("click", (e) => {
    const button = e.target.closest("[data-action]");
    if (!button) return;
    if (button.dataset.action === "pay") onPay(button.dataset.invoice);
    else if (button.dataset.action === "pay-selected") openMakePayment(selectedBoxes().map((b) => b.dataset.invoice));
    else if (button.dataset.action === "make-a-payment") openMakePayment([button.dataset.invoice]);
    else if (button.dataset.action === "pay-balance") onPayBalance(button.dataset.currency);
  });

  if (payDialog) wirePayDialog();
  if (selectedDialog) wireSelectedDialog();
  updateSelection();
  schedulePoll();
})();
