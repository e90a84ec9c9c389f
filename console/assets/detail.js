/* ledgerflow run page: the detail panel (an event, an attempt or a task).
 *
 * An event shows its reason, its state diff (field, before, after), the task
 * states it changed, and the exact input the agent got or output it returned;
 * a journaled step's event shows the step and its whole request and result.
 */
"use strict";
(function () {
  const LF = window.LF;
  const h = LF.h;
  const Page = LF.RunPage;

  /* -- detail panel ------------------------------------------------------ */
  function section(title, value, cls) {
    if (value === undefined || value === null) return null;
    return h("section", { class: "d-sec " + (cls || "") }, h("h4", { text: title }), h("pre", { class: "json", text: LF.json(value) }));
  }
  function kv(pairs) {
    return h("dl", { class: "kv" }, pairs.filter((p) => p[1] !== undefined && p[1] !== null && p[1] !== "")
      .map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v instanceof Node ? v : String(v))]));
  }
  Page.prototype.gotoLink = function (seq, text) {
    return h("button", { type: "button", class: "link", "data-goto-seq": seq, text: text || "seq " + seq, onclick: () => this.setCurrent(seq, "link") });
  };

  const OUTPUT_TITLES = { OutputReceived: "Output the agent returned", OutputAccepted: "Output accepted", PlanProposed: "The planner's answer",
    EscalationResolved: "Output supplied by the resolution", ResolutionRequested: "Output requested by the resolution" };

  Page.prototype.showEvent = function (e) {
    const d = LF.clear(this.detail);
    d.dataset.seq = String(e.seq);
    delete d.dataset.task;
    d.append(h("h3", {}, "seq " + e.seq + " \u00b7 " + e.type),
      kv([["time", "+" + LF.ms(e.t)], ["machine", e.machine], ["trigger", e.trigger], ["move", e.dst ? e.src + " \u2192 " + e.dst : ""],
        ["task", e.task], ["attempt", e.attempt]]),
      h("section", { class: "d-sec" }, h("h4", { text: "Reason" }), h("p", { class: "d-reason", text: e.reason || "(none recorded)" })));
    if (e.changes && e.changes.length) {
      d.appendChild(h("section", { class: "d-sec" }, h("h4", { text: "State diff" }),
        h("table", { class: "diff" }, h("thead", {}, h("tr", {}, h("th", { text: "field" }), h("th", { text: "before" }), h("th", { text: "after" }))),
          h("tbody", {}, e.changes.map((c) => h("tr", { "data-field": c.field },
            h("td", { text: (c.task ? "task " + c.task + " " : "run ") + c.field }),
            h("td", {}, h("pre", { text: LF.json(c.before) })), h("td", {}, h("pre", { text: LF.json(c.after) }))))))));
    }
    if (e.status) {
      d.appendChild(h("p", { class: "d-status" }, "task states changed: ",
        Object.entries(e.status).map(([tid, st]) => h("span", { class: "chg" }, h("code", { text: tid }), " \u2192 ", LF.statusBadge(st), " "))));
    }
    d.append(section("Input the agent got", e.input, "d-input") || "",
      section(OUTPUT_TITLES[e.type] || "Output", e.output, "d-output") || "",
      section("Candidate output (held back)", e.candidate, "d-candidate") || "");
    const st = e.step_seq !== undefined ? this.stepAt(e) : null;
    if (st) {
      d.appendChild(h("section", { class: "d-sec" }, h("h4", { text: "Journaled step" }),
        kv([["step", st.index + " " + st.name], ["kind", st.kind], ["called", st.model || st.tool], ["outcome", st.outcome],
          ["tokens", st.tokens || 0], ["cost", LF.cost(st.cost)], ["duration", (st.duration_ms || 0).toFixed(2) + " ms"],
          ["side effect", st.side_effect ? "yes" : ""], ["error", st.message]])));
    }
    if (e.step_seq !== undefined) {
      d.append(section("Step request", e.request, "d-request") || "", section("Step result", e.result, "d-result") || "");
    }
    d.append(section("Other fields", e.data, "d-data") || "");
    if (e.task && e.attempt !== undefined) {
      const a = this.byAttempt.get(e.task + "\u0000" + e.attempt);
      if (a) d.appendChild(h("p", {}, h("button", { type: "button", class: "link", text: "attempt " + a.attempt + " of " + a.task + " \u2192", onclick: () => this.selectAttempt(a) })));
    }
  };

  Page.prototype.stepAt = function (e) {
    const a = e.attempt !== undefined ? this.byAttempt.get(e.task + "\u0000" + e.attempt) : null;
    const steps = a ? a.steps : (this.doc.planner_steps || []);
    return (steps || []).find((st) => st.seq === e.step_seq) || null;
  };

  Page.prototype.attemptEvents = function (a) {
    const out = [];
    const lo = this.index.get(a.start_seq), hi = this.index.get(a.end_seq);
    for (let i = lo; i !== undefined && i <= hi; i++) {
      const e = this.events[i];
      if (e.task === a.task && e.attempt === a.attempt) out.push(e);
    }
    return out;
  };

  Page.prototype.selectAttempt = function (a) {
    this.setCurrent(a.end_seq, "attempt");
    const d = LF.clear(this.detail);
    d.dataset.seq = String(a.end_seq);
    d.dataset.task = a.task;
    const evs = this.attemptEvents(a);
    const dispatch = evs.find((e) => e.type === "TaskDispatched");
    const received = evs.find((e) => e.type === "OutputReceived");
    const ending = evs[evs.length - 1];
    d.append(h("h3", {}, "task " + a.task + " \u00b7 attempt " + a.attempt + " ", h("span", { class: "badge outcome-" + a.outcome, text: a.outcome })),
      kv([["marks", (a.marks || []).join(", ")], ["from", this.gotoLink(a.start_seq)], ["to", this.gotoLink(a.end_seq)],
        ["duration", LF.ms(Math.max(0, a.end_t - a.start_t))], ["timeout", a.timeout_s ? a.timeout_s + " s" : ""], ["error", a.error]]),
      ending ? h("section", { class: "d-sec" }, h("h4", { text: "Reason" }), h("p", { class: "d-reason", text: ending.reason })) : "",
      section("Input the agent got", dispatch ? dispatch.input : undefined, "d-input") || "",
      section("Output the agent returned", received ? received.output : undefined, "d-output") || "");
    if (a.steps && a.steps.length) {
      d.appendChild(h("section", { class: "d-sec" }, h("h4", { text: "Steps" }), h("table", { class: "steps" },
        h("thead", {}, h("tr", {}, ["#", "step", "kind", "called", "tokens", "ms", "outcome"].map((c) => h("th", { text: c })))),
        h("tbody", {}, a.steps.map((st) => h("tr", {}, h("td", {}, this.gotoLink(st.seq, String(st.index))), h("td", { text: st.name }), h("td", { text: st.kind }),
          h("td", { text: st.model || st.tool || "" }), h("td", { text: st.tokens || 0 }), h("td", { text: (st.duration_ms || 0).toFixed(2) }), h("td", { text: st.outcome })))))));
    }
    d.appendChild(h("section", { class: "d-sec" }, h("h4", { text: "Its events" }),
      h("ol", { class: "evlist" }, evs.map((e) => h("li", {}, this.gotoLink(e.seq), " " + e.type + " \u2014 " + LF.short(e.reason, 90))))));
  };

  Page.prototype.selectTask = function (t) {
    const d = LF.clear(this.detail);
    delete d.dataset.seq;
    d.dataset.task = t.id;
    const at = this.states.get(t.id);
    d.append(h("h3", {}, "task " + t.id + " ", LF.statusBadge(at || "absent")),
      kv([["agent", t.agent], ["needs", (t.needs || []).join(", ") || "nothing"], ["final status", t.status], ["attempts", t.attempts],
        ["resolved by", t.resolved_by], ["last error", t.last_error]]),
      h("section", { class: "d-sec" }, h("h4", { text: "Attempts" }), h("ul", {}, this.attempts.filter((a) => a.task === t.id).map((a) =>
        h("li", {}, h("button", { type: "button", class: "link", text: "attempt " + a.attempt + ": " + a.outcome, onclick: () => this.selectAttempt(a) }))))),
      section("Input (last attempt)", t.input, "d-input") || "", section("Output", t.output, "d-output") || "");
  };

})();
