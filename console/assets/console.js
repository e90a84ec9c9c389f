/* ledgerflow console: the index (runs list with status filters, the escalation
 * inbox), live by polling every 2 s, and the boot of every page.
 *
 * The page says what it is on <body>: data-view="index" | "run", data-api
 * (the API's prefix, console mode) and, for the one-file page, the run
 * document in <script type="application/json" id="run-data">.
 */
"use strict";
(function () {
  const LF = window.LF;
  const h = LF.h;
  const POLL_MS = 2000;
  const FILTERS = ["all", "queued", "running", "waiting", "completed", "failed", "cancelled"];

  LF.consolePage = function (root, api) {
    let status = "all";
    const filters = h("nav", { class: "filters", "aria-label": "status filter" });
    const table = h("tbody");
    const inbox = h("div", { id: "inbox", class: "inbox" });
    const updated = h("span", { class: "updated" });
    const cards = new Map();   // "run/task" -> card, kept across polls so a form being filled survives
    function drawFilters() {
      LF.clear(filters);
      for (const f of FILTERS) {
        filters.appendChild(h("button", { type: "button", class: "filter" + (f === status ? " on" : ""), "data-status": f, "aria-pressed": f === status ? "true" : "false",
          text: f, onclick: () => { status = f; drawFilters(); poll(); } }));
      }
    }
    LF.clear(root).append(
      h("header", { class: "run-head" }, h("h1", { text: "ledgerflow console" }), updated),
      h("div", { class: "grid" },
        h("div", { class: "main" }, h("section", { class: "panel" }, h("h2", { text: "Runs" }), filters,
          h("table", { id: "runs", class: "runs" }, h("thead", {}, h("tr", {}, ["run", "workflow", "status", "events", "updated", "reason"].map((c) => h("th", { text: c })))), table))),
        h("div", { class: "side" }, h("section", { class: "panel" }, h("h2", { text: "Escalation inbox" }), inbox))));
    drawFilters();

    function drawRuns(runs) {
      LF.clear(table);
      if (!runs.length) { table.appendChild(h("tr", {}, h("td", { colspan: 6, class: "hint", text: "No runs" + (status === "all" ? "" : " " + status) + "." }))); return; }
      for (const r of runs) {
        table.appendChild(h("tr", { "data-run-id": r.run_id, "data-status": r.status },
          h("td", {}, h("a", { href: "/runs/" + encodeURIComponent(r.run_id) }, h("code", { text: r.run_id }))),
          h("td", { text: r.workflow }), h("td", {}, LF.statusBadge(r.status)), h("td", { text: r.events }),
          h("td", { text: (r.updated_at || "").replace("T", " ").slice(0, 19) }), h("td", { class: "reason", text: r.reason || "" })));
      }
    }

    function drawInbox(entries) {
      const seen = new Set();
      for (const esc of entries) {
        const key = esc.run_id + "/" + esc.task_id;
        seen.add(key);
        if (!cards.has(key)) cards.set(key, LF.escalationCard(esc, { api, showRun: true, onDone: () => setTimeout(poll, 300) }));
      }
      for (const [key, card] of cards) {
        // A resolved card stays until the next poll shows its outcome; then it goes.
        if (!seen.has(key) && !card.querySelector(".esc-form.resolved")) { card.remove(); cards.delete(key); }
        else if (!seen.has(key)) { cards.delete(key); setTimeout(() => card.remove(), POLL_MS * 2); }
      }
      const order = entries.map((e) => cards.get(e.run_id + "/" + e.task_id)).filter(Boolean);
      for (const card of order) if (card.parentNode !== inbox) inbox.appendChild(card);
      let empty = inbox.querySelector(".empty");
      if (!entries.length && !inbox.querySelector(".esc-card")) {
        if (!empty) inbox.appendChild(h("p", { class: "hint empty", text: "No open escalations." }));
      } else if (empty) empty.remove();
    }

    let busy = false;
    async function poll() {
      if (busy) return;
      busy = true;
      try {
        const query = status === "all" ? "" : "?status=" + encodeURIComponent(status);
        const [runs, escs] = await Promise.all([LF.request("GET", api + "/runs" + query), LF.request("GET", api + "/escalations")]);
        if (!runs.ok) { LF.banner("Could not list runs: " + LF.errorText(runs)); return; }
        LF.banner(escs.ok ? "" : "Could not read the inbox: " + LF.errorText(escs));
        drawRuns((runs.body && runs.body.runs) || []);
        if (escs.ok) drawInbox((escs.body && escs.body.escalations) || []);
        updated.textContent = "updated " + new Date().toLocaleTimeString();
        document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
      } catch (e) {
        LF.banner("The console did not answer.");
      } finally {
        busy = false;
      }
    }
    poll();
    const timer = setInterval(poll, POLL_MS);
    LF.stopPolling = () => clearInterval(timer);
  };

  function boot() {
    const body = document.body;
    const root = document.getElementById("app");
    const api = body.dataset.api || null;
    LF.token(); // move a #token=... into sessionStorage before anything is fetched
    const inline = document.getElementById("run-data");
    if (inline) {
      const doc = JSON.parse(inline.textContent);
      LF.page = LF.renderRun(root, doc, { api });
      body.dataset.ready = "true";
      return;
    }
    const done = () => { body.dataset.ready = "true"; };
    if (body.dataset.view === "run") LF.runPage(root, api).then(done, done);
    else { LF.consolePage(root, api); done(); }
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
