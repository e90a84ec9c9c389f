/* ledgerflow console: the escalation form, built from the task's output contract.
 *
 * Object properties become inputs by type (string, number, integer, boolean,
 * enum); nested objects and arrays fall back to a JSON textarea. Secret
 * fields (redact / writeOnly / format password) are password inputs and are
 * never prefilled. The server validates exactly as `ledgerflow resolve`
 * does; its 422 field errors are shown next to their fields
 * (data-error-for="<field>"), errors of no field under data-error-for="_form".
 */
"use strict";
(function () {
  const LF = window.LF;
  const h = LF.h;

  function resolveRef(node, root) {
    let seen = 0;
    while (node && typeof node.$ref === "string" && node.$ref.startsWith("#") && seen < 32) {
      let target = root;
      for (const part of node.$ref.slice(1).split("/").filter(Boolean)) {
        target = target ? target[part.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined;
      }
      if (!target) break;
      node = Object.assign({}, target, node, { $ref: undefined });
      delete node.$ref;
      seen += 1;
    }
    return node || {};
  }

  /* The field's kind: "string" | "number" | "integer" | "boolean" | "enum" | "json". */
  function fieldKind(prop, root) {
    let node = resolveRef(prop, root);
    let nullable = false;
    const branches = node.anyOf || node.oneOf;
    if (Array.isArray(branches)) {
      const real = branches.map((b) => resolveRef(b, root)).filter((b) => b.type !== "null");
      nullable = real.length < branches.length;
      if (real.length !== 1) return { kind: "json", node, nullable };
      node = Object.assign({}, node, real[0]);
    }
    const secret = node.redact === true || node.writeOnly === true || node.format === "password";
    if (Array.isArray(node.enum)) return { kind: "enum", node, nullable, secret };
    const type = Array.isArray(node.type) ? node.type.filter((t) => t !== "null")[0] : node.type;
    if (["string", "number", "integer", "boolean"].includes(type)) {
      return { kind: type, node, nullable, secret };
    }
    return { kind: "json", node, nullable, secret };
  }

  function inputFor(name, info, value, required) {
    const id = "f-" + Math.random().toString(36).slice(2, 9);
    const attrs = { id, name, "data-field": name, "data-kind": info.kind };
    let input;
    const has = value !== undefined && value !== null && !info.secret;
    if (info.kind === "enum") {
      input = h("select", attrs,
        (!required || info.nullable) ? h("option", { value: "", text: "" }) : null,
        info.node.enum.map((opt) => h("option", {
          value: JSON.stringify(opt), text: String(opt),
          selected: has && JSON.stringify(value) === JSON.stringify(opt) })));
    } else if (info.kind === "boolean") {
      input = h("input", Object.assign(attrs, { type: "checkbox", checked: has && value === true }));
    } else if (info.kind === "number" || info.kind === "integer") {
      input = h("input", Object.assign(attrs, { type: "number", step: info.kind === "integer" ? "1" : "any",
        value: has ? String(value) : undefined }));
    } else if (info.kind === "string") {
      input = h("input", Object.assign(attrs, { type: info.secret ? "password" : "text",
        autocomplete: info.secret ? "new-password" : "off", value: has ? value : undefined }));
    } else {
      input = h("textarea", Object.assign(attrs, { rows: 4, spellcheck: "false" }));
      input.value = has ? JSON.stringify(value, null, 2) : "";
    }
    return { id, input };
  }

  function readField(input) {
    const kind = input.dataset.kind;
    if (kind === "boolean") return { value: input.checked };
    const raw = input.value;
    if (raw === "") return { empty: true };
    if (kind === "enum") return { value: JSON.parse(raw) };
    if (kind === "number" || kind === "integer") {
      const n = Number(raw);
      if (!Number.isFinite(n)) return { error: "not a number" };
      return { value: n };
    }
    if (kind === "string") return { value: raw };
    try { return { value: JSON.parse(raw) }; } catch (e) { return { error: "not valid JSON: " + e.message }; }
  }

  function showErrors(form, errors) {
    for (const el of form.querySelectorAll("[data-error-for]")) { el.textContent = ""; }
    for (const err of errors) {
      const loc = Array.isArray(err.loc) ? err.loc : [];
      const field = loc[0] === "output" && loc.length > 1 ? String(loc[1]) : "_form";
      let where = form.querySelector('[data-error-for="' + CSS.escape(field) + '"]');
      if (!where) where = form.querySelector('[data-error-for="_form"]');
      const deep = loc.length > 2 || (where.dataset.errorFor === "_form" && loc.length > 1);
      const path = deep ? loc.slice(1).join(".") + ": " : "";
      where.textContent = (where.textContent ? where.textContent + "; " : "") + path + err.msg;
    }
  }

  /* The form for one escalation: esc = {run_id, task_id, kind, reason, candidate, schema|output_schema}. */
  LF.escalationForm = function (esc, opts) {
    const api = opts.api;
    const runId = esc.run_id || opts.runId;
    const schema = esc.schema || esc.output_schema || null;
    const candidate = esc.candidate && typeof esc.candidate === "object" ? esc.candidate : {};
    const form = h("form", { class: "esc-form", "data-run": runId, "data-task": esc.task_id, novalidate: true });
    const fields = h("div", { class: "fields" });
    const props = schema && schema.properties && typeof schema.properties === "object" ? schema.properties : null;
    const required = new Set((schema && schema.required) || []);
    if (props) {
      for (const [name, prop] of Object.entries(props)) {
        const info = fieldKind(prop, schema);
        const field = inputFor(name, info, candidate[name], required.has(name));
        const title = resolveRef(prop, schema).title || name;
        fields.appendChild(h("div", { class: "field kind-" + info.kind },
          h("label", { for: field.id }, title, required.has(name) ? h("span", { class: "req", text: " *" }) : null,
            info.secret ? h("span", { class: "hint", text: " (secret)" }) : null),
          field.input,
          h("div", { class: "field-error", "data-error-for": name, role: "alert" })));
      }
    } else {
      const area = h("textarea", { name: "_output", "data-field": "_output", "data-kind": "json", rows: 8, spellcheck: "false" });
      area.value = JSON.stringify(esc.candidate === undefined ? {} : esc.candidate, null, 2);
      fields.appendChild(h("div", { class: "field kind-json" },
        h("label", { text: "output (JSON; no contract schema here)" }), area));
    }
    const note = h("input", { type: "text", name: "note", class: "note", placeholder: "why (recorded in the log)" });
    const by = h("input", { type: "text", name: "by", class: "by", placeholder: "who decides", value: opts.by || "" });
    const status = h("div", { class: "form-status", "data-error-for": "_form", role: "alert" });
    const done = h("div", { class: "form-done", role: "status" });
    const buttons = h("div", { class: "buttons" },
      h("button", { type: "submit", class: "accept", "data-action": "output", text: "Accept output" }),
      h("button", { type: "button", class: "retry", "data-action": "retry", text: "Retry" }),
      h("button", { type: "button", class: "abandon", "data-action": "abandon", text: "Abandon" }));
    form.append(fields, h("div", { class: "meta" }, h("label", {}, "note ", note), h("label", {}, "by ", by)), buttons, status, done);

    function collect() {
      if (!props) {
        try { return { output: JSON.parse(fields.querySelector("textarea").value) }; } catch (e) {
          return { errors: [{ loc: [], msg: "the output is not valid JSON: " + e.message }] };
        }
      }
      const output = {};
      const errors = [];
      for (const input of fields.querySelectorAll("[data-field]")) {
        const got = readField(input);
        if (got.error) errors.push({ loc: ["output", input.dataset.field], msg: got.error });
        else if (!got.empty) output[input.dataset.field] = got.value;
      }
      return errors.length ? { errors } : { output };
    }

    async function send(action) {
      let body;
      if (action === "output") {
        const got = collect();
        if (got.errors) { showErrors(form, got.errors); return; }
        body = { output: got.output };
      } else {
        body = action === "retry" ? { retry: true } : { abandon: true };
      }
      if (note.value) body.note = note.value;
      if (by.value) body.by = by.value;
      showErrors(form, []);
      done.textContent = "";
      for (const b of buttons.querySelectorAll("button")) b.disabled = true;
      const path = api + "/runs/" + encodeURIComponent(runId) + "/tasks/" + encodeURIComponent(esc.task_id) + "/resolve";
      let answer;
      try { answer = await LF.request("POST", path, body); } catch (e) { answer = { ok: false, status: 0, body: { errors: [{ loc: [], msg: "the console did not answer" }] } }; }
      for (const b of buttons.querySelectorAll("button")) b.disabled = false;
      if (answer.ok) {
        const doc = answer.body || {};
        form.classList.add("resolved");
        done.textContent = "Resolved: the run is now " + (doc.status || "updated") + (doc.reason ? " \u2014 " + doc.reason : "");
        if (opts.onDone) opts.onDone(doc);
      } else {
        const errors = answer.body && Array.isArray(answer.body.errors) ? answer.body.errors : [{ loc: [], msg: LF.errorText(answer) }];
        showErrors(form, errors);
      }
    }
    form.addEventListener("submit", (event) => { event.preventDefault(); send("output"); });
    buttons.querySelector(".retry").addEventListener("click", () => send("retry"));
    buttons.querySelector(".abandon").addEventListener("click", () => send("abandon"));
    return form;
  };

  /* One inbox card: the escalation, its reason and candidate, and its form (or a CLI hint). */
  LF.escalationCard = function (esc, opts) {
    const runId = esc.run_id || opts.runId;
    const card = h("section", { class: "esc-card", "data-escalation": runId + "/" + esc.task_id },
      h("h3", {}, opts.showRun ? h("a", { href: "/runs/" + encodeURIComponent(runId), text: runId }) : null,
        opts.showRun ? " \u00b7 " : null, "task ", h("code", { text: esc.task_id }),
        esc.kind ? h("span", { class: "kind", text: " " + esc.kind }) : null),
      h("p", { class: "reason", text: esc.reason || "" }),
      h("details", { open: true }, h("summary", { text: "candidate output" }),
        h("pre", { class: "json", text: LF.json(esc.candidate) })));
    if (opts.api) {
      card.appendChild(LF.escalationForm(esc, opts));
    } else {
      card.appendChild(h("p", { class: "hint" }, "Settle it with ",
        h("code", { text: "ledgerflow resolve " + runId + " " + esc.task_id + " (--output JSON | --retry | --abandon)" }),
        " or in the console (ledgerflow ui)."));
    }
    return card;
  };
})();
