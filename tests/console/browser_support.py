"""Headless Chromium for the console's browser tests (Playwright for Python).

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run``); the
tests skip, saying why, only when it cannot be found. Every page opened
through :class:`Watched` records console errors, page errors and any
request that leaves the page's own origin, so a test can assert there were
none.

Example::

    with browser() as chromium:
        watched = Watched.open(chromium, "file:///tmp/run.html")
        assert watched.problems() == []
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from ledgerflow.console.cli import main

__all__ = ["ARGS", "SCREENSHOTS", "Watched", "artefact_dir", "browser", "chromium_path",
           "in_thread", "replay_states", "set_seq", "shown_states"]

P = ParamSpec("P")
T = TypeVar("T")

ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Where the README's screenshots live (made by these tests, committed).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
#: How long a page may take to be ready (the 1,000-task page included).
READY_MS = 60_000


def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` in a fresh thread and return what it returns.

    Playwright's sync API keeps an event loop running in the test's thread,
    so anything that calls ``asyncio.run`` (the store, the CLI) runs beside it.
    """
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args, **kwargs).result()


def chromium_path() -> str | None:
    """Debian's Chromium, or one on PATH; None when there is none."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@contextlib.contextmanager
def browser() -> Iterator[Browser]:
    """Headless Chromium (skips the test when no Chromium is installed)."""
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium not found (/usr/bin/chromium): apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def artefact_dir(fallback: Path) -> Path:
    """``$LEDGERFLOW_TEST_ARTEFACTS`` if set (CI keeps it), else ``fallback``."""
    where = Path(os.environ.get("LEDGERFLOW_TEST_ARTEFACTS") or fallback)
    where.mkdir(parents=True, exist_ok=True)
    return where


@dataclass
class Watched:
    """A page and what went wrong on it: console errors, page errors, foreign requests."""

    page: Page
    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    @classmethod
    def open(cls, chromium: Browser, url: str, *, wait_ready: bool = True) -> Watched:
        page = chromium.new_page(viewport={"width": 1440, "height": 1000})
        parts = urlsplit(url)
        watched = cls(page=page, origin=f"{parts.scheme}://{parts.netloc}")
        page.on("console", watched._console)
        page.on("pageerror", lambda exc: watched.errors.append(f"pageerror: {exc}"))
        page.on("request", watched._request)
        page.goto(url)
        if wait_ready:
            page.wait_for_selector("body[data-ready=true]", timeout=READY_MS)
        return watched

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def _request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("data", "blob"):
            return
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign.append(request.url)

    def problems(self) -> list[str]:
        return self.errors + [f"request left the page: {url}" for url in self.foreign]


def set_seq(page: Page, seq: int) -> None:
    """Move the seq slider to ``seq`` as a person dragging it would (an input event)."""
    page.eval_on_selector(
        "#seq-slider",
        "(el, seq) => { el.value = String(seq); el.dispatchEvent(new Event('input')); }", seq)
    page.wait_for_selector(f'#seq-label[data-seq="{seq}"]')


def shown_states(page: Page) -> dict[str, str]:
    """The task-state table as the page shows it: task id -> status."""
    rows: list[list[str]] = page.eval_on_selector_all(
        "[data-task-state]", "rows => rows.map(r => [r.dataset.taskState, r.dataset.status])")
    shown = {row[0]: row[1] for row in rows}
    texts: list[str] = page.eval_on_selector_all(
        "[data-task-state] .badge", "badges => badges.map(b => b.textContent)")
    assert texts == [status for _, status in rows]  # what is read is what is written
    return shown


def replay_states(db: Path, run_id: str, seq: int) -> dict[str, str]:
    """Task id -> status of ``ledgerflow replay RUN --to SEQ --json``."""
    result = in_thread(CliRunner().invoke, main, ["replay", run_id, "--to", str(seq), "--json",
                                                  "--db", str(db)])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return {task: t["status"] for task, t in doc["tasks"].items()}
