"""The HTML of the run page and the console index: one JS app, two ways to ship it.

- ``render_run_page(doc, api=None)``: the one-file page (``ledgerflow view``):
  the run document inlined as ``<script type="application/json"
  id="run-data">`` (escaped so no value can close the script element), the
  scripts and styles inlined too. It opens from disk and makes no request.
- ``render_run_page(None, api="/api")`` and ``render_console(api="/api")``:
  the console's pages (``ledgerflow ui``): they load ``/assets/*.js`` and
  ``/assets/run.css`` and fetch their data from the API, with no inline
  script or handler at all, so the server's CSP (``script-src 'self'``)
  holds.

The assets are hand-written vanilla JS, SVG and CSS in
``ledgerflow/console/assets`` (package data: they ship in the wheel). This
module imports nothing of the ``[ui]`` extra.

Example::

    html = render_run_page(await page_document(store, run_id), api=None)
    Path("run.html").write_text(html, encoding="utf-8")
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ASSET_NAMES", "SCRIPTS", "STYLES", "asset_text", "render_console", "render_run_page",
           "script_json"]

#: The scripts, in load order (each adds to ``window.LF``; the last boots the page).
SCRIPTS = ("common.js", "inbox.js", "run.js", "detail.js", "console.js")
STYLES = ("run.css",)
ASSET_NAMES = SCRIPTS + STYLES

_CLOSE_TAG = re.compile(r"</(script|style)", re.IGNORECASE)


@cache
def asset_text(name: str) -> str:
    """The text of one bundled asset (``run.js``, ``run.css``, ...)."""
    if name not in ASSET_NAMES:
        raise ValueError(f"No console asset named {name!r} (there are: {', '.join(ASSET_NAMES)}).")
    text = resources.files("ledgerflow.console").joinpath("assets", name).read_text("utf-8")
    if _CLOSE_TAG.search(text):  # would end the inline element early in the one-file page
        raise ValueError(f"Console asset {name} contains a closing </script> or </style> tag.")
    return text


def script_json(doc: Any) -> str:
    """``doc`` as JSON safe inside a ``<script>`` element.

    ``<``, ``>`` and ``&`` become ``\\u003c``, ``\\u003e``, ``\\u0026`` (so
    ``</script>`` or ``<!--`` in any value cannot end or change the element),
    and U+2028/U+2029 are escaped too; ``JSON.parse`` reads the same value.

    Example::

        >>> script_json({"x": "</script><b>"})
        '{"x":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(doc, ensure_ascii=False, allow_nan=False, default=str,
                      separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _head(title: str, *, inline: bool) -> str:
    if inline:
        styles = "".join(f"<style>\n{asset_text(n)}\n</style>" for n in STYLES)
    else:
        styles = "".join(f'<link rel="stylesheet" href="/assets/{n}">' for n in STYLES)
    return ('<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            # No favicon request (a 404 in the console, a request off a file:// page).
            '<link rel="icon" href="data:,">'
            f"<title>{html.escape(title)}</title>{styles}</head>")


def _scripts(*, inline: bool) -> str:
    if inline:
        return "".join(f"<script>\n{asset_text(n)}\n</script>" for n in SCRIPTS)
    return "".join(f'<script src="/assets/{n}" defer></script>' for n in SCRIPTS)


def _body(view: str, api: str | None) -> str:
    attrs = f'data-view="{view}"'
    if api is not None:
        attrs += f' data-api="{html.escape(api, quote=True)}"'
    return (f"<body {attrs}><div id=\"app\"><noscript>This page needs JavaScript.</noscript>"
            "</div>")


def render_run_page(doc: dict[str, Any] | None, *, api: str | None) -> str:
    """The run page: with ``doc`` the one-file page, with ``None`` the console's shell.

    With a document, everything is inline and ``api`` (if given) only turns
    the escalation forms on (they post to ``{api}/runs/{id}/tasks/{task}/resolve``);
    without one, the page fetches ``{api}/runs/{id}/page`` for the run id in
    its URL path (``/runs/{id}``).

    Example::

        html = render_run_page(doc, api=None)   # ledgerflow view
        shell = render_run_page(None, api="/api")
    """
    if doc is None:
        if api is None:
            raise ValueError("render_run_page needs a document, or api= to fetch it from.")
        return (_head("ledgerflow run", inline=False) + _body("run", api)
                + _scripts(inline=False) + "</body></html>\n")
    run = doc.get("run", {})
    title = f"ledgerflow run {run.get('run_id', '')} ({run.get('status', '')})"
    data = f'<script type="application/json" id="run-data">{script_json(doc)}</script>'
    return (_head(title, inline=True) + _body("run", api) + data + _scripts(inline=True)
            + "</body></html>\n")


def render_console(*, api: str) -> str:
    """The console's index: the runs list (status filters, live) and the escalation inbox.

    Example::

        html = render_console(api="/api")
    """
    return (_head("ledgerflow console", inline=False) + _body("index", api)
            + _scripts(inline=False) + "</body></html>\n")
