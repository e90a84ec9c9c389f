/* ledgerflow run page: timeline (one bar per attempt), plan graph, decision list,
 * the seq slider and the detail panel.
 *
 * The task states at a seq are the page document's per-event status changes
 * ("status": {task: status}, folded by the server with machines.evolve)
 * applied up to that seq: the page knows no transition rule of its own.
 *
 * The decision list is virtualised: only the rows in (and near) its scrolled
 * window exist in the DOM (each with data-seq), so a 20,000-event run costs
 * a few dozen rows; moving the slider or clicking a bar scrolls it to the seq.
 */
"use strict";
(function () {
  const LF = window.LF;
  const h = LF.h;
  const s = LF.s;
  const ROW_H = 22;        // decision row height (px), fixed so the list can be virtualised
  const BAR_ROW = 16;      // timeline row height
  const LABEL_W = 130;
  const NODE_W = 118, NODE_H = 18, NODE_GAP = 6, COL_GAP = 34, PER_COL = 30;
  const OUTCOMES = ["ok", "failed", "timeout", "rejected", "escalated", "running", "received", "abandoned", "interrupted"];
  const STATUSES = ["pending", "ready", "dispatched", "validating", "retry_wait", "escalated", "succeeded", "abandoned", "skipped"];

  function Page(root, doc, opts) {
    this.root = root;
    this.opts = opts;
    this.load(doc);
  }

  Page.prototype.load = function (doc) {
    this.doc = doc;
    this.events = doc.events || [];
    this.index = new Map();
    this.events.forEach((e, i) => this.index.set(e.seq, i));
    this.tasks = doc.tasks || [];
    this.taskById = new Map(this.tasks.map((t) => [t.id, t]));
    this.attempts = doc.attempts || [];
    this.byAttempt = new Map(this.attempts.map((a) => [a.task + "\u0000" + a.attempt, a]));
    this.statesIdx = -1;
    this.states = new Map();
    this.filter = { trouble: false, text: "" };
    this.rows = this.events.map((e, i) => i);
    const last = this.events.length ? this.events[this.events.length - 1] : null;
    this.tmax = last ? last.t : 0;
    this.axis = this.tmax > 0 ? "time" : "seq";
  };

  /* -- the task states at an event index, from the recorded changes -------- */
  Page.prototype.statesAt = function (idx) {
    if (idx < this.statesIdx) { this.states = new Map(); this.statesIdx = -1; }
    for (let i = this.statesIdx + 1; i <= idx; i++) {
      const changed = this.events[i].status;
      if (changed) for (const tid in changed) this.states.set(tid, changed[tid]);
    }
    this.statesIdx = idx;
    return this.states;
  };

  Page.prototype.render = function () {
    const doc = this.doc;
    const run = doc.run;
    LF.clear(this.root);
    const totals = run.totals || {};
    const header = h("header", { class: "run-head" },
      this.opts.api ? h("a", { class: "back", href: "/", text: "\u2190 all runs" }) : null,
      h("h1", {}, "run ", h("code", { text: run.run_id }), " ", h("span", { class: "wf", text: run.workflow }), " ", LF.statusBadge(run.status)),
      run.reason ? h("p", { class: "reason", text: run.reason }) : null,
      h("ul", { class: "totals" },
        [["events", run.events], ["tasks", totals.tasks], ["attempts", totals.attempts], ["retries", totals.retries],
          ["tokens", totals.tokens], ["cost", LF.cost(totals.cost)], ["model calls", totals.step_llm_calls],
          ["tool calls", totals.step_tool_calls], ["duration", LF.ms(run.duration_ms || 0)]]
          .map(([k, v]) => h("li", {}, h("span", { class: "k", text: k }), " ", h("span", { class: "v", text: v === undefined ? "-" : v })))));
    this.slider = h("input", { type: "range", id: "seq-slider", min: 1, max: Math.max(1, run.events), value: run.events, step: 1, "aria-label": "seq" });
    this.seqLabel = h("span", { id: "seq-label", class: "seq-label" });
    const scrub = h("div", { class: "scrub" },
      h("button", { type: "button", class: "prev", title: "previous event", text: "\u25c0", onclick: () => this.step(-1) }),
      this.slider,
      h("button", { type: "button", class: "next", title: "next event", text: "\u25b6", onclick: () => this.step(1) }),
      h("button", { type: "button", class: "trouble-next", title: "next failure or escalation", text: "next trouble", onclick: () => this.nextTrouble() }),
      this.seqLabel);
    this.slider.addEventListener("input", () => this.setCurrent(Number(this.slider.value), "slider"));
    this.timelineBox = h("div", { class: "timeline-box scroll" });
    this.graphBox = h("div", { class: "graph-box scroll" });
    this.detail = h("aside", { id: "detail", class: "detail" }, h("p", { class: "hint", text: "Click a bar, a task or a decision to see its reason, state diff, and the exact input and output." }));
    this.decisionsBox = h("div", { id: "decisions", class: "decisions", role: "list" });
    this.stateTable = h("tbody");
    this.stateSummary = h("p", { class: "state-summary" });
    const axisButton = h("button", { type: "button", class: "axis", text: "axis: " + this.axis, onclick: () => {
      this.axis = this.axis === "time" ? "seq" : "time";
      axisButton.textContent = "axis: " + this.axis;
      this.drawTimeline();
      this.markCurrent();
    } });
    const trouble = h("input", { type: "checkbox", id: "only-trouble" });
    trouble.addEventListener("change", () => { this.filter.trouble = trouble.checked; this.applyFilter(); });
    const search = h("input", { type: "search", id: "decision-filter", placeholder: "filter: task, type, reason" });
    search.addEventListener("input", () => { this.filter.text = search.value.toLowerCase(); this.applyFilter(); });
    const escalations = (doc.escalations || []);
    this.root.append(header, scrub,
      h("div", { class: "grid" },
        h("div", { class: "main" },
          h("section", { class: "panel" }, h("h2", {}, "Timeline ", axisButton), legend(OUTCOMES, "outcome-", ["retried"]), this.timelineBox),
          h("section", { class: "panel" }, h("h2", { text: "Plan" }), legend(STATUSES, "st-"), this.graphBox),
          h("section", { class: "panel" }, h("h2", {}, "Decisions ",
            h("label", { class: "opt" }, trouble, " failures and escalations only"), " ", search),
          h("div", { class: "decision-head drow" }, ["seq", "time", "type", "machine", "move", "reason"].map((c) => h("span", { class: "c-" + c, text: c }))),
          this.decisionsBox)),
        h("div", { class: "side" }, this.detail,
          h("section", { class: "panel" }, h("h2", { text: "Task states at this seq" }), this.stateSummary,
            h("table", { id: "task-states", class: "states" }, h("thead", {}, h("tr", {}, h("th", { text: "task" }), h("th", { text: "agent" }), h("th", { text: "status" }))), this.stateTable)),
          escalations.length ? h("section", { class: "panel inbox", id: "run-inbox" }, h("h2", { text: "Open escalations" }),
            escalations.map((esc) => LF.escalationCard(esc, { api: this.opts.api, runId: run.run_id, onDone: this.opts.onResolved }))) : null)));
    this.drawTimeline();
    this.drawGraph();
    this.setupDecisions();
    this.current = -1;
    this.setCurrent(run.events, "init");
  };

  function legend(names, prefix, marks) {
    return h("div", { class: "legend" },
      names.map((n) => h("span", { class: "item" }, h("span", { class: "swatch " + prefix + n }), n)),
      (marks || []).map((m) => h("span", { class: "item" }, h("span", { class: "mark-glyph", text: "\u21bb" }), m)),
      prefix === "outcome-" ? h("span", { class: "item" }, h("span", { class: "swatch step kind-llm" }), "model call") : null,
      prefix === "outcome-" ? h("span", { class: "item" }, h("span", { class: "swatch step kind-tool" }), "tool call") : null);
  }

  /* -- timeline ---------------------------------------------------------- */
  Page.prototype.x = function (seq, t) {
    const width = this.chartW;
    if (this.axis === "time") return LABEL_W + (this.tmax ? t / this.tmax : 0) * width;
    const n = Math.max(1, this.events.length - 1);
    const i = this.index.has(seq) ? this.index.get(seq) : seq - 1;
    return LABEL_W + (i / n) * width;
  };

  Page.prototype.drawTimeline = function () {
    const box = LF.clear(this.timelineBox);
    const order = [];
    const rowOf = new Map();
    for (const a of this.attempts) {
      if (!rowOf.has(a.task)) { rowOf.set(a.task, order.length); order.push(a.task); }
    }
    const width = Math.max(640, (box.clientWidth || 900) - 16);
    this.chartW = width - LABEL_W - 16;
    const height = order.length * BAR_ROW + 24;
    const svg = s("svg", { class: "timeline", width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "timeline: one bar per attempt" });
    const labels = s("g", { class: "labels" });
    order.forEach((task, i) => {
      labels.appendChild(s("text", { x: 4, y: 20 + i * BAR_ROW + 11, class: "label", text: LF.short(task, 18) }));
    });
    svg.appendChild(labels);
    const bars = s("g", { class: "bars" });
    for (const a of this.attempts) {
      const row = rowOf.get(a.task);
      const y = 20 + row * BAR_ROW + 2;
      const x1 = this.x(a.start_seq, a.start_t);
      const x2 = Math.max(this.x(a.end_seq, a.end_t), x1 + 6);
      const marks = (a.marks || []).map((m) => " mark-" + m).join("");
      const g = s("g", { class: "bar outcome-" + a.outcome + marks, "data-task": a.task, "data-attempt": a.attempt, tabindex: 0 },
        s("title", { text: a.task + " attempt " + a.attempt + ": " + a.outcome + (a.error ? " \u2014 " + a.error : "") + " (seq " + a.start_seq + "\u2013" + a.end_seq + ")" }),
        s("rect", { class: "body", x: x1, y, width: x2 - x1, height: BAR_ROW - 4, rx: 2 }));
      for (const st of a.steps || []) {
        let sx1, sx2;
        if (this.axis === "time") {
          sx2 = this.x(st.seq, st.t);
          sx1 = Math.max(x1, this.x(st.seq, Math.max(0, st.t - (st.duration_ms || 0))));
        } else {
          sx1 = this.x(st.seq, st.t) - 1; sx2 = sx1 + 2;
        }
        g.appendChild(s("rect", { class: "step kind-" + st.kind, x: sx1, y: y + 3, width: Math.max(1.5, sx2 - sx1), height: BAR_ROW - 10 },
          s("title", { text: "step " + st.index + " " + st.name + " (" + st.kind + (st.model || st.tool ? " " + (st.model || st.tool) : "") + "): " + st.outcome + ", " + (st.tokens || 0) + " tokens, " + (st.duration_ms || 0).toFixed(2) + " ms" })));
      }
      if ((a.marks || []).includes("retried")) g.appendChild(s("text", { class: "mark-glyph", x: x2 + 2, y: y + 10, text: "\u21bb" }));
      if (a.outcome === "escalated") g.appendChild(s("text", { class: "mark-glyph esc", x: x2 + 2, y: y + 10, text: "!" }));
      g.addEventListener("click", () => this.selectAttempt(a));
      g.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.selectAttempt(a); });
      bars.appendChild(g);
    }
    svg.appendChild(bars);
    this.cursor = s("line", { class: "cursor", x1: LABEL_W, x2: LABEL_W, y1: 14, y2: height });
    svg.appendChild(this.cursor);
    svg.appendChild(s("text", { class: "axis-label", x: LABEL_W, y: 11, text: this.axis === "time" ? "0 ms" : "seq 1" }));
    svg.appendChild(s("text", { class: "axis-label end", x: LABEL_W + this.chartW, y: 11, "text-anchor": "end",
      text: this.axis === "time" ? LF.ms(this.tmax) : "seq " + (this.events.length ? this.events[this.events.length - 1].seq : 0) }));
    box.appendChild(svg);
    this.svgBars = bars;
  };

  /* -- plan graph -------------------------------------------------------- */
  Page.prototype.drawGraph = function () {
    const box = LF.clear(this.graphBox);
    if (!this.tasks.length) { box.appendChild(h("p", { class: "hint", text: "No plan accepted (yet)." })); return; }
    const layers = [];
    for (const t of this.tasks) { (layers[t.depth || 0] = layers[t.depth || 0] || []).push(t); }
    const pos = new Map();
    let col = 0, maxRows = 0;
    for (const layer of layers) {
      if (!layer) continue;
      for (let i = 0; i < layer.length; i++) {
        const c = col + Math.floor(i / PER_COL);
        const r = i % PER_COL;
        pos.set(layer[i].id, { x: 8 + c * (NODE_W + COL_GAP), y: 8 + r * (NODE_H + NODE_GAP) });
        maxRows = Math.max(maxRows, r + 1);
      }
      col += Math.ceil(layer.length / PER_COL);
    }
    const width = 16 + col * (NODE_W + COL_GAP);
    const height = 16 + maxRows * (NODE_H + NODE_GAP);
    const svg = s("svg", { class: "graph", width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "plan: tasks by dependency depth" });
    let d = "";
    for (const t of this.tasks) {
      const to = pos.get(t.id);
      for (const need of t.needs || []) {
        const from = pos.get(need);
        if (!from) continue;
        const x1 = from.x + NODE_W, y1 = from.y + NODE_H / 2, x2 = to.x, y2 = to.y + NODE_H / 2;
        const mx = (x1 + x2) / 2;
        d += "M" + x1 + " " + y1 + "C" + mx + " " + y1 + " " + mx + " " + y2 + " " + x2 + " " + y2;
      }
    }
    if (d) svg.appendChild(s("path", { class: "edges", d }));
    this.nodes = new Map();
    const nodes = s("g", { class: "nodes" });
    for (const t of this.tasks) {
      const p = pos.get(t.id);
      const g = s("g", { class: "node", "data-node": t.id, transform: "translate(" + p.x + " " + p.y + ")", tabindex: 0 },
        s("title", { text: t.id + " (" + t.agent + ")" + (t.needs && t.needs.length ? " needs " + t.needs.join(", ") : "") }),
        s("rect", { width: NODE_W, height: NODE_H, rx: 4 }),
        s("text", { x: 6, y: 13, text: LF.short(t.id, 16) }));
      g.addEventListener("click", () => this.selectTask(t));
      nodes.appendChild(g);
      this.nodes.set(t.id, g);
    }
    svg.appendChild(nodes);
    box.appendChild(svg);
  };

  /* -- decisions (virtualised) ------------------------------------------- */
  Page.prototype.setupDecisions = function () {
    const box = this.decisionsBox;
    this.spacer = h("div", { class: "spacer" });
    this.rowLayer = h("div", { class: "rows" });
    box.append(this.spacer, this.rowLayer);
    box.addEventListener("scroll", () => this.drawRows());
    this.applyFilter();
  };

  Page.prototype.applyFilter = function () {
    const f = this.filter;
    this.rows = [];
    this.events.forEach((e, i) => {
      if (f.trouble && !e.trouble) return;
      if (f.text && !((e.task || "") + " " + e.type + " " + e.reason + " " + e.machine).toLowerCase().includes(f.text)) return;
      this.rows.push(i);
    });
    this.spacer.style.height = this.rows.length * ROW_H + "px";
    this.drawRows();
  };

  Page.prototype.drawRows = function () {
    const box = this.decisionsBox;
    const top = box.scrollTop;
    const visible = Math.ceil((box.clientHeight || 400) / ROW_H);
    const first = Math.max(0, Math.floor(top / ROW_H) - 10);
    const last = Math.min(this.rows.length, first + visible + 20);
    LF.clear(this.rowLayer);
    for (let r = first; r < last; r++) {
      const e = this.events[this.rows[r]];
      const cls = "drow" + (e.trouble ? " trouble" : "") + (this.rows[r] === this.current ? " current" : "") + " type-" + e.type;
      const row = h("div", { class: cls, "data-seq": e.seq, role: "listitem", tabindex: 0 },
        h("span", { class: "c-seq", text: e.seq }),
        h("span", { class: "c-time", text: LF.ms(e.t) }),
        h("span", { class: "c-type", text: e.type }),
        h("span", { class: "c-machine", text: e.machine }),
        h("span", { class: "c-move", text: e.dst ? e.src + " \u2192 " + e.dst : "" }),
        h("span", { class: "c-reason", text: e.reason, title: e.reason }));
      row.style.top = r * ROW_H + "px";
      row.addEventListener("click", () => this.setCurrent(e.seq, "row"));
      row.addEventListener("keydown", (ev) => { if (ev.key === "Enter") this.setCurrent(e.seq, "row"); });
      this.rowLayer.appendChild(row);
    }
  };

  Page.prototype.scrollToRow = function (idx) {
    const r = this.rows.indexOf(idx);
    if (r < 0) return;
    const box = this.decisionsBox;
    const y = r * ROW_H;
    if (y < box.scrollTop || y + ROW_H > box.scrollTop + box.clientHeight) {
      box.scrollTop = Math.max(0, y - box.clientHeight / 2);
    }
  };

  /* -- the current seq: slider, graph colours, state table, list, cursor -- */
  Page.prototype.setCurrent = function (seq, from) {
    if (!this.events.length) return;
    let idx = this.index.has(seq) ? this.index.get(seq) : Math.min(this.events.length - 1, Math.max(0, seq - 1));
    this.current = idx;
    const e = this.events[idx];
    if (from !== "slider") this.slider.value = String(e.seq);
    this.seqLabel.textContent = "seq " + e.seq + " / " + this.doc.run.events + ": " + e.type + (e.task ? " (" + e.task + ")" : "");
    this.seqLabel.dataset.seq = String(e.seq);
    const states = this.statesAt(idx);
    for (const [tid, g] of this.nodes || []) {
      g.setAttribute("class", "node st-" + (states.get(tid) || "absent"));
    }
    this.drawStates(states);
    this.markCurrent();
    this.scrollToRow(idx);
    this.drawRows();
    if (from !== "init" && from !== "attempt") this.showEvent(e);
  };

  Page.prototype.markCurrent = function () {
    if (this.current < 0 || !this.cursor) return;
    const e = this.events[this.current];
    const x = this.x(e.seq, e.t);
    this.cursor.setAttribute("x1", x);
    this.cursor.setAttribute("x2", x);
    for (const old of this.svgBars.querySelectorAll(".bar.selected")) old.classList.remove("selected");
    if (e.task && e.attempt !== undefined) {
      const bar = this.svgBars.querySelector('.bar[data-task="' + CSS.escape(e.task) + '"][data-attempt="' + e.attempt + '"]');
      if (bar) bar.classList.add("selected");
    }
  };

  Page.prototype.drawStates = function (states) {
    const body = this.stateTable;
    const rows = [];
    const counts = {};
    for (const t of this.tasks) {
      const st = states.get(t.id);
      if (st === undefined) continue;
      counts[st] = (counts[st] || 0) + 1;
      rows.push(h("tr", { "data-task-state": t.id, "data-status": st },
        h("td", { class: "task", text: t.id }), h("td", { text: t.agent }), h("td", {}, LF.statusBadge(st))));
    }
    // Tasks the log names that the plan list does not (never expected): still shown.
    for (const [tid, st] of states) {
      if (!this.taskById.has(tid)) rows.push(h("tr", { "data-task-state": tid, "data-status": st }, h("td", { text: tid }), h("td"), h("td", {}, LF.statusBadge(st))));
    }
    LF.clear(body).append(...rows);
    this.stateSummary.textContent = rows.length ? Object.entries(counts).map(([k, v]) => v + " " + k).join(", ") : "no plan yet at this seq";
  };

  Page.prototype.step = function (delta) {
    const idx = Math.min(this.events.length - 1, Math.max(0, this.current + delta));
    this.setCurrent(this.events[idx].seq, "button");
  };

  Page.prototype.nextTrouble = function () {
    for (let i = this.current + 1; i < this.events.length; i++) {
      if (this.events[i].trouble) { this.setCurrent(this.events[i].seq, "button"); return; }
    }
  };

  /* -- entry points ------------------------------------------------------- */
  LF.RunPage = Page;  // detail.js adds the detail panel's methods

  LF.renderRun = function (root, doc, opts) {
    const page = new Page(root, doc, opts || {});
    page.render();
    return page;
  };

  /* Console mode: fetch the page document, poll while the run can still move. */
  LF.runPage = async function (root, api) {
    const parts = window.location.pathname.split("/").filter(Boolean);
    const runId = decodeURIComponent(parts[parts.length - 1] || "");
    let page = null;
    let shownEvents = -1;
    async function refresh(force) {
      let answer;
      try { answer = await LF.request("GET", api + "/runs/" + encodeURIComponent(runId) + "/page"); } catch (e) { LF.banner("The console did not answer."); return; }
      if (!answer.ok) { LF.banner("Could not load run " + runId + ": " + LF.errorText(answer)); return; }
      LF.banner("");
      const doc = answer.body;
      if (!force && doc.run.events === shownEvents) return doc;
      const atEnd = !page || page.current === page.events.length - 1;
      const keep = page ? page.events[page.current].seq : null;
      shownEvents = doc.run.events;
      page = LF.renderRun(root, doc, { api, onResolved: () => refresh(true) });
      if (!atEnd && keep !== null) page.setCurrent(keep, "init");
      document.title = "ledgerflow run " + doc.run.run_id + " (" + doc.run.status + ")";
      return doc;
    }
    const doc = await refresh(true);
    const timer = setInterval(async () => {
      if (!page || LF.TERMINAL.includes(page.doc.run.status)) return;
      if (document.querySelector(".esc-form input:focus, .esc-form textarea:focus")) return; // keep what is being typed
      await refresh(false);
    }, 2000);
    LF.stopPolling = () => clearInterval(timer);
    return doc;
  };
})();
