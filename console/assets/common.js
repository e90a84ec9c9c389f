/* ledgerflow console: shared helpers (DOM building, the API client, formatting).
 *
 * Everything the page shows is built with createElement/textContent, never
 * innerHTML, so a task id or an agent's output can hold any characters.
 * No framework, no build step, no network beyond the console's own API.
 */
"use strict";
(function () {
  const LF = (window.LF = window.LF || {});
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "ledgerflow-token";

  /* h("div", {class: "x", "data-seq": 3, onclick: fn}, child, "text", [more]) */
  function build(el, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on") && typeof value === "function") {
        el.addEventListener(key.slice(2), value);
      } else if (key === "text") {
        el.textContent = String(value);
      } else {
        el.setAttribute(key, value === true ? "" : String(value));
      }
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const child of children) {
      if (child === undefined || child === null || child === false) continue;
      if (Array.isArray(child)) append(el, child);
      else if (child instanceof Node) el.appendChild(child);
      else el.appendChild(document.createTextNode(String(child)));
    }
  }
  LF.h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
  LF.s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);
  LF.clear = (el) => { while (el.firstChild) el.removeChild(el.firstChild); return el; };

  LF.json = (value) => {
    if (value === undefined) return "";
    try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
  };
  LF.short = (value, limit) => {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    const n = limit || 80;
    if (text === undefined) return "";
    return text.length <= n ? text : text.slice(0, n - 1) + "\u2026";
  };
  LF.ms = (t) => (t >= 1000 ? (t / 1000).toFixed(2) + " s" : t.toFixed(1) + " ms");
  LF.cost = (c) => (c ? Number(c).toPrecision(3) : "0");

  /* The bearer token: given once in the URL fragment (#token=...), kept in
   * sessionStorage, dropped from the address bar; never sent in a query string. */
  LF.token = function () {
    const match = /(?:^|[#&])token=([^&]*)/.exec(window.location.hash || "");
    if (match) {
      try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1])); } catch (e) { /* private mode */ }
      const url = window.location.pathname + window.location.search;
      window.history.replaceState(null, "", url);
    }
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  };

  /* fetch JSON from the console API; resolves {ok, status, body}. */
  LF.request = async function (method, path, body) {
    const headers = { Accept: "application/json" };
    const token = LF.token();
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let doc = null;
    try { doc = await response.json(); } catch (e) { doc = null; }
    return { ok: response.ok, status: response.status, body: doc };
  };

  LF.errorText = function (answer) {
    const errors = answer && answer.body && answer.body.errors;
    if (Array.isArray(errors) && errors.length) return errors.map((e) => e.msg).join("; ");
    return "HTTP " + (answer ? answer.status : "?");
  };

  /* A message in the page's banner (never the browser console). */
  LF.banner = function (text) {
    let el = document.getElementById("banner");
    if (!el) {
      el = LF.h("div", { id: "banner", class: "banner", role: "alert" });
      document.body.insertBefore(el, document.body.firstChild);
    }
    el.textContent = text || "";
    el.hidden = !text;
  };

  LF.statusBadge = (status) => LF.h("span", { class: "badge st-" + status, text: status });

  LF.TERMINAL = ["completed", "failed", "cancelled"];
})();
