"""The run page and the console in headless Chromium: what a person sees and clicks.

The pages are the real ones: the one-file page written by ``ledgerflow view``
(opened from file://, no network) and the console served by the real
server (``console_server.serving``). Every test also asserts the page logged
no console error, threw nothing, and requested nothing outside its origin.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import (
    SCREENSHOTS,
    Watched,
    artefact_dir,
    browser,
    in_thread,
    replay_states,
    set_seq,
    shown_states,
)
from click.testing import CliRunner
from console_server import DemoRuns, last_seq, make_demo, serving
from playwright.sync_api import Browser

from ledgerflow.console.cli import main
from ledgerflow.eventstore import Envelope, open_store
from ledgerflow.examples import travel
from ledgerflow.machines import idempotency_key
from ledgerflow.replay.timeline import decision_log


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser() as found:
        yield found


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Path, DemoRuns]:
    db = tmp_path / "demo.db"
    return db, in_thread(make_demo, db)


def _log(db: Path, run_id: str) -> list[Envelope]:
    async def go() -> list[Envelope]:
        async with open_store(db, create=False, read_only=True) as store:
            return await store.read_all(run_id)
    return in_thread(asyncio.run, go())


def _view(db: Path, run_id: str, out: Path) -> str:
    result = in_thread(CliRunner().invoke, main,
                       ["view", run_id, "--out", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return out.resolve().as_uri()


def _dispatched(db: Path, run_id: str) -> list[tuple[str, int]]:
    return [(row.event.task_id, row.event.attempt)  # type: ignore[attr-defined]
            for row in decision_log(_log(db, run_id)) if row.type == "TaskDispatched"]


def _bars(watched: Watched) -> list[tuple[str, int]]:
    found: list[list[str]] = watched.page.eval_on_selector_all(
        "svg.timeline [data-task][data-attempt]",
        "bars => bars.map(b => [b.dataset.task, b.dataset.attempt])")
    return [(task, int(attempt)) for task, attempt in found]


def test_view_page_has_one_bar_per_attempt(chromium: Browser, demo: tuple[Path, DemoRuns],
                                           tmp_path: Path) -> None:
    db, runs = demo
    for run_id in (runs.completed, runs.waiting):
        watched = Watched.open(chromium, _view(db, run_id, tmp_path / f"{run_id}.html"))
        assert sorted(_bars(watched)) == sorted(_dispatched(db, run_id))
        assert watched.page.locator(".bar.outcome-timeout").count() == 1  # flights, attempt 1
        assert watched.page.locator(".bar.outcome-rejected").count() == 1  # hotels' prose
        assert watched.page.locator(".bar.outcome-escalated").count() == 1  # price
        assert watched.page.locator(".bar.mark-retried").count() == 2
        assert watched.problems() == []
        watched.page.close()


def test_console_run_page_has_one_bar_per_attempt(chromium: Browser,
                                                  demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    with serving(db, token="s3cret") as base_url:
        # The token comes in the fragment (never a query string) and stays in the tab.
        watched = Watched.open(chromium, f"{base_url}runs/{runs.completed}#token=s3cret")
        assert sorted(_bars(watched)) == sorted(_dispatched(db, runs.completed))
        assert "token" not in watched.page.url
        assert watched.problems() == []
        watched.page.close()


def test_clicking_an_escalation_row_shows_its_reason(chromium: Browser,
                                                     demo: tuple[Path, DemoRuns],
                                                     tmp_path: Path) -> None:
    db, runs = demo
    rows = decision_log(_log(db, runs.waiting))
    escalated = next(row for row in rows if row.type == "TaskEscalated")
    watched = Watched.open(chromium, _view(db, runs.waiting, tmp_path / "run.html"))
    page = watched.page
    set_seq(page, 1)  # the list scrolls to the slider's seq; then a click on the row
    set_seq(page, escalated.seq)
    page.click(f'#decisions [data-seq="{escalated.seq}"]')
    page.wait_for_selector(f'#detail[data-seq="{escalated.seq}"]')
    assert page.inner_text("#detail .d-reason") == escalated.reason
    assert "Output of task 'price' reported confidence 0.55" in escalated.reason
    assert "candidate" in page.inner_text("#detail").lower()
    # A bar click shows its attempt: the escalated attempt of price, with its input.
    page.click('.bar[data-task="price"][data-attempt="1"]')
    page.wait_for_selector('#detail[data-task="price"]')
    assert "escalated" in page.inner_text("#detail h3")
    assert '"passenger_count": 2' in page.inner_text("#detail .d-input")
    assert watched.problems() == []


def test_slider_shows_the_states_replay_rebuilds(chromium: Browser, demo: tuple[Path, DemoRuns],
                                                 tmp_path: Path) -> None:
    db, runs = demo
    for run_id in (runs.waiting, runs.completed):
        last = in_thread(last_seq, db, run_id)
        watched = Watched.open(chromium, _view(db, run_id, tmp_path / f"{run_id}.html"))
        # Every seq of the waiting run; a spread (back and forth) of the completed one.
        seqs = range(1, last + 1) if run_id == runs.waiting else [last, 2, 3, 9, 27, 16, 30, 1]
        for seq in seqs:
            set_seq(watched.page, seq)
            assert shown_states(watched.page) == replay_states(db, run_id, seq), f"seq {seq}"
        assert watched.problems() == []
        watched.page.close()


def test_inbox_form_resolves_the_waiting_run(chromium: Browser, demo: tuple[Path, DemoRuns],
                                             tmp_path: Path) -> None:
    db, runs = demo
    key = idempotency_key(runs.waiting, "book")
    booked_before = travel.BOOKING_CALLS.count(key)
    with serving(db) as base_url:
        watched = Watched.open(chromium, base_url)
        page = watched.page
        card = f'[data-escalation="{runs.waiting}/price"]'
        page.wait_for_selector(card + " form")
        assert page.locator("#runs [data-run-id]").count() == 2
        assert page.input_value(card + ' [data-field="total"]') == "836"  # the candidate
        _screenshot(page, "inbox.png", tmp_path)
        page.fill(card + " input.note", "checked the festive surcharge with the hotel")
        page.fill(card + " input.by", "browser-test")
        page.click(card + " button.accept")
        page.wait_for_selector(card + " .form-done:has-text('completed')")
        page.wait_for_selector(f'#runs [data-run-id="{runs.waiting}"][data-status="completed"]',
                               timeout=10_000)
        assert watched.problems() == []
    assert travel.BOOKING_CALLS.count(key) - booked_before == 1
    rows = decision_log(_log(db, runs.waiting))
    resolved = next(row for row in rows if row.type == "EscalationResolved")
    assert resolved.event.by == "browser-test"  # type: ignore[attr-defined]
    assert rows[-1].type == "RunCompleted"


def test_invalid_form_shows_field_errors_and_appends_nothing(chromium: Browser,
                                                             demo: tuple[Path, DemoRuns]
                                                             ) -> None:
    db, runs = demo
    before = in_thread(last_seq, db, runs.waiting)
    with serving(db) as base_url:
        watched = Watched.open(chromium, f"{base_url}runs/{runs.waiting}")
        page = watched.page
        form = f'form[data-run="{runs.waiting}"][data-task="price"]'
        page.fill(form + ' [data-field="total"]', "-5")       # total must be > 0
        page.fill(form + ' [data-field="confidence"]', "7")   # confidence must be <= 1
        page.click(form + " button.accept")
        error = page.locator(form + ' [data-error-for="total"]')
        error.wait_for()
        page.wait_for_function(
            "sel => document.querySelector(sel).textContent.length > 0",
            arg=form + ' [data-error-for="total"]')
        assert "greater than 0" in error.inner_text()
        assert "less than or equal to 1" in page.inner_text(form + ' [data-error-for="confidence"]')
        assert page.inner_text(form + " .form-done") == ""
        # A JSON field that does not parse is refused here, before anything is sent.
        page.fill(form + ' [data-field="line_items"]', "[{oops")
        page.click(form + " button.accept")
        page.wait_for_function(
            "sel => document.querySelector(sel).textContent.includes('JSON')",
            arg=form + ' [data-error-for="line_items"]')
        # The console's own errors (a 422 is an answer, not a failure) are all there was.
        assert [e for e in watched.problems() if "422" not in e] == []
    assert in_thread(last_seq, db, runs.waiting) == before


def _screenshot(page: object, name: str, tmp_path: Path) -> None:
    from playwright.sync_api import Page  # noqa: PLC0415

    assert isinstance(page, Page)
    shot = artefact_dir(tmp_path / "artefacts") / name
    page.screenshot(path=str(shot), full_page=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / name)


def test_run_page_screenshot(chromium: Browser, demo: tuple[Path, DemoRuns],
                             tmp_path: Path) -> None:
    db, runs = demo
    escalated = next(row for row in decision_log(_log(db, runs.completed))
                     if row.type == "TaskEscalated")
    watched = Watched.open(chromium, _view(db, runs.completed, tmp_path / "run.html"))
    set_seq(watched.page, escalated.seq)
    watched.page.click(f'#decisions [data-seq="{escalated.seq}"]')
    _screenshot(watched.page, "run-page.png", tmp_path)
    assert watched.problems() == []


@pytest.mark.slow
def test_a_1000_task_page_loads_without_errors(chromium: Browser, tmp_path: Path) -> None:
    import sys  # noqa: PLC0415

    root = Path(__file__).resolve().parents[2]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.view_page import make_big_run, measure  # noqa: PLC0415

    db = tmp_path / "big.db"
    run_id = in_thread(asyncio.run, make_big_run(db, tasks=1000))
    measured, html = in_thread(asyncio.run, measure(db, run_id))
    out = tmp_path / "big.html"
    out.write_text(html, encoding="utf-8")
    started = time.perf_counter()
    watched = Watched.open(chromium, out.as_uri())
    loaded = time.perf_counter() - started
    print(f"1,000-task page: {int(measured['events'])} events, {int(measured['bytes']):,} bytes, "
          f"document {measured['document_s']:.2f} s, render {measured['render_s']:.2f} s, "
          f"loaded in Chromium in {loaded:.2f} s")
    page = watched.page
    assert page.locator("svg.timeline [data-attempt]").count() == len(_dispatched(db, run_id))
    assert page.locator("[data-task-state]").count() == 1000
    rows = page.locator("#decisions [data-seq]").count()
    assert 0 < rows < 200  # virtualised: only the window's rows exist
    set_seq(page, 2000)
    assert shown_states(page) == replay_states(db, run_id, 2000)
    page.click("#decisions [data-seq='2000']")
    page.wait_for_selector('#detail[data-seq="2000"]')
    assert watched.problems() == []
    assert loaded < 30
