"""The console's JSON API over a real uvicorn server and a real SQLite file (and PostgreSQL).

The documents are the CLI's own (``runs --json``, ``replay --json``); a
resolution goes through ``Orchestrator.resolve``: an invalid one answers 422
with its field errors and appends nothing, a valid one drives the demo's
waiting run to completion with one booking, and who resolved it is logged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from console_server import DemoRuns, call, last_seq, make_demo, serving

from ledgerflow.console.cli import main
from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel, travel_unreviewed
from ledgerflow.machines import Orchestrator, Worker, idempotency_key

PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledgerflow.db"


@pytest.fixture
def demo(db: Path) -> DemoRuns:
    return make_demo(db)


@pytest.fixture
def base(db: Path, demo: DemoRuns) -> Iterator[str]:
    with serving(db) as url:
        yield url


def cli_json(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def events_of(db: Path, run_id: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        async with open_store(db, create=False, read_only=True) as store:
            return [{"seq": e.seq, "type": e.type, **json.loads(e.data)}
                    for e in await store.read_all(run_id)]

    return asyncio.run(read())


def resolve_url(base: str, run_id: str, task: str = "price") -> str:
    return f"{base}api/runs/{run_id}/tasks/{task}/resolve"


def good_price(base: str, run_id: str) -> dict[str, Any]:
    candidate = call("GET", f"{base}api/runs/{run_id}").json["escalations"]["price"]["candidate"]
    assert candidate["total"] > 0
    return {**candidate, "confidence": 0.9}


# -- reading ---------------------------------------------------------------


def test_runs_is_the_runs_json_document(base: str, db: Path, demo: DemoRuns) -> None:
    answer = call("GET", base + "api/runs")
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json == cli_json("runs", "--json", "--db", str(db))
    assert {r["run_id"] for r in answer.json["runs"]} == {demo.completed, demo.waiting}
    waiting = call("GET", base + "api/runs?status=waiting&limit=5").json
    assert waiting == cli_json("runs", "--json", "--status", "waiting", "--limit", "5",
                               "--db", str(db))
    assert [r["run_id"] for r in waiting["runs"]] == [demo.waiting]


def test_runs_refuses_an_unknown_status_or_a_bad_limit(base: str) -> None:
    bad = call("GET", base + "api/runs?status=sleepy")
    assert bad.status == 422
    assert bad.json["errors"][0]["loc"] == ["query", "status"]
    for limit in ("0", "x", "-1", "100000"):
        answer = call("GET", base + f"api/runs?limit={limit}")
        assert answer.status == 422, limit
        assert answer.json["errors"][0]["loc"] == ["query", "limit"]


def test_run_is_the_replay_json_document(base: str, db: Path, demo: DemoRuns) -> None:
    for run_id in (demo.completed, demo.waiting):
        answer = call("GET", f"{base}api/runs/{run_id}")
        assert answer.status == 200
        assert answer.json == cli_json("replay", run_id, "--json", "--db", str(db))
    at = call("GET", f"{base}api/runs/{demo.waiting}?to=12").json
    assert at == cli_json("replay", demo.waiting, "--to", "12", "--json", "--db", str(db))
    assert at["seq"] == 12
    # A unique prefix names a run, as on the command line.
    assert call("GET", f"{base}api/runs/{demo.waiting[:6]}").json["run_id"] == demo.waiting


def test_run_answers_404_for_no_such_run_and_422_for_a_seq_past_the_end(
        base: str, demo: DemoRuns) -> None:
    missing = call("GET", base + "api/runs/nosuchrun")
    assert missing.status == 404
    assert "nosuchrun" in missing.json["errors"][0]["msg"]
    assert call("GET", base + "api/runs/nosuchrun/events").status == 404
    past = call("GET", f"{base}api/runs/{demo.waiting}?to=999")
    assert past.status == 422
    assert past.json["errors"][0]["loc"] == ["query", "to"]


def test_events_are_the_envelopes_with_their_data_decoded(
        base: str, db: Path, demo: DemoRuns) -> None:
    stored = events_of(db, demo.waiting)
    first = call("GET", f"{base}api/runs/{demo.waiting}/events?limit=10").json
    assert first["run_id"] == demo.waiting
    assert first["last_seq"] == len(stored)
    assert [e["seq"] for e in first["events"]] == list(range(1, 11))
    assert first["next_after"] == 10
    rest = call("GET", f"{base}api/runs/{demo.waiting}/events?after=10").json
    events = first["events"] + rest["events"]
    assert [e["seq"] for e in events] == [e["seq"] for e in stored]
    assert [e["type"] for e in events] == [e["type"] for e in stored]
    assert {k for e in events for k in e} == {"seq", "type", "at", "data", "prev_hash", "hash"}
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
    escalated = next(e for e in events if e["type"] == "TaskEscalated")
    assert escalated["data"]["task_id"] == "price"
    assert escalated["data"]["candidate"]["confidence"] == 0.55
    end = call("GET", f"{base}api/runs/{demo.waiting}/events?after={len(stored)}").json
    assert end["events"] == []
    assert end["next_after"] == len(stored)


def test_escalations_lists_the_waiting_run_with_its_output_contract(
        base: str, demo: DemoRuns) -> None:
    inbox = call("GET", base + "api/escalations").json["escalations"]
    assert len(inbox) == 1
    entry = inbox[0]
    assert entry["run_id"] == demo.waiting
    assert entry["task_id"] == "price"
    assert entry["agent"] == "pricing"
    assert entry["kind"] == "low_confidence"
    assert "below the required 0.70" in entry["reason"]
    assert entry["candidate"]["confidence"] == 0.55
    assert entry["schema"] == travel.PricingOutput.model_json_schema()


# -- resolving -------------------------------------------------------------


def test_an_invalid_output_is_422_with_field_errors_and_nothing_appended(
        base: str, db: Path, demo: DemoRuns) -> None:
    before = last_seq(db, demo.waiting)
    answer = call("POST", resolve_url(base, demo.waiting),
                  body={"output": {"total": "about 900", "line_items": [], "confidence": 2}})
    assert answer.status == 422, answer
    locs = {tuple(e["loc"]): e["msg"] for e in answer.json["errors"]}
    assert "valid number" in locs["output", "total"]
    assert "less than or equal to 1" in locs["output", "confidence"]
    assert last_seq(db, demo.waiting) == before
    # The same document `ledgerflow resolve` refuses.
    result = CliRunner().invoke(main, ["resolve", demo.waiting, "price", "--output",
                                       '{"total": "about 900", "line_items": [], "confidence": 2}',
                                       "--db", str(db)])
    assert result.exit_code == 1
    assert last_seq(db, demo.waiting) == before


@pytest.mark.parametrize(("body", "status", "loc"), [
    (b"{not json", 400, ["body"]),
    (b'{"total": NaN}', 400, ["body"]),
    (b'{"retry": true, "retry": true}', 400, ["body"]),
    (b"[1, 2]", 422, ["body"]),
    (b"{}", 422, ["body"]),
    (b'{"note": "nothing chosen"}', 422, ["body"]),
    (b'{"retry": true, "abandon": true}', 422, ["body"]),
    (b'{"output": {"total": 1}, "retry": true}', 422, ["body"]),
    (b'{"retry": "yes"}', 422, ["body", "retry"]),
    (b'{"output": [1]}', 422, ["body", "output"]),
    (b'{"retry": true, "note": 5}', 422, ["body", "note"]),
    (b'{"retry": true, "reason": "x"}', 422, ["body", "reason"]),
])
def test_a_malformed_body_is_refused_and_nothing_appended(
        base: str, db: Path, demo: DemoRuns, body: bytes, status: int, loc: list[str]) -> None:
    before = last_seq(db, demo.waiting)
    answer = call("POST", resolve_url(base, demo.waiting), raw=body)
    assert answer.status == status, answer
    assert answer.json["errors"][0]["loc"] == loc
    assert last_seq(db, demo.waiting) == before


def test_a_task_not_escalated_or_a_run_not_found_is_refused(
        base: str, db: Path, demo: DemoRuns) -> None:
    before = last_seq(db, demo.waiting)
    not_escalated = call("POST", resolve_url(base, demo.waiting, "flights"),
                         body={"retry": True})
    assert not_escalated.status == 422
    assert "not escalated" in not_escalated.json["errors"][0]["msg"]
    no_task = call("POST", resolve_url(base, demo.waiting, "nope"), body={"abandon": True})
    assert no_task.status == 422
    assert "no task 'nope'" in no_task.json["errors"][0]["msg"]
    assert call("POST", resolve_url(base, "nosuchrun"), body={"retry": True}).status == 404
    done = call("POST", resolve_url(base, demo.completed), body={"retry": True})
    assert done.status == 422
    assert last_seq(db, demo.waiting) == before


def test_a_valid_output_completes_the_waiting_run_with_one_booking(
        base: str, db: Path, demo: DemoRuns) -> None:
    key = idempotency_key(demo.waiting, "book")
    assert travel.BOOKING_CALLS.count(key) == 0
    answer = call("POST", resolve_url(base, demo.waiting),
                  body={"output": good_price(base, demo.waiting), "note": "checked the rate",
                        "by": "ana@example.com"})
    assert answer.status == 200, answer
    doc = answer.json
    assert doc["status"] == "completed"
    assert doc == cli_json("replay", demo.waiting, "--json", "--db", str(db))
    assert doc["tasks"]["book"]["status"] == "succeeded"
    assert travel.BOOKING_CALLS.count(key) == 1
    resolved = [e for e in events_of(db, demo.waiting) if e["type"] == "EscalationResolved"]
    assert len(resolved) == 1
    assert resolved[0]["by"] == "ana@example.com"
    assert resolved[0]["note"] == "checked the rate"
    assert resolved[0]["action"] == "output"
    assert call("GET", base + "api/escalations").json["escalations"] == []
    again = call("POST", resolve_url(base, demo.waiting), body={"retry": True})
    assert again.status == 422


def test_by_defaults_to_the_console_and_the_client_address(
        base: str, db: Path, demo: DemoRuns) -> None:
    answer = call("POST", resolve_url(base, demo.waiting), body={"abandon": True})
    assert answer.status == 200, answer
    assert answer.json["tasks"]["price"]["status"] == "abandoned"
    assert answer.json["tasks"]["book"]["status"] == "skipped"
    resolved = [e for e in events_of(db, demo.waiting) if e["type"] == "EscalationResolved"]
    assert [e["by"] for e in resolved] == ["console:127.0.0.1"]


def test_a_pool_run_is_queued_for_a_worker_not_driven_by_the_console(db: Path) -> None:
    goal = travel.TripGoal(destination="Porto", passengers=1)

    async def submit() -> str:
        async with open_store(db) as store:
            run_id = await Orchestrator(store).submit(travel_unreviewed.wf, goal)
            await Worker(store, [travel_unreviewed.wf], concurrency=1).run(until_idle=True)
            return run_id

    run_id = asyncio.run(submit())
    with serving(db) as base:
        assert call("GET", f"{base}api/runs/{run_id}").json["status"] == "waiting"
        answer = call("POST", resolve_url(base, run_id), body={"retry": True, "note": "again"})
        assert answer.status == 200, answer
        assert answer.json["status"] == "queued"
        assert call("GET", base + "api/escalations").json["escalations"] == []
    requested = [e for e in events_of(db, run_id) if e["type"] == "ResolutionRequested"]
    assert [(e["by"], e["action"], e["note"]) for e in requested] == [
        ("console:127.0.0.1", "retry", "again")]
    assert not [e for e in events_of(db, run_id) if e["type"] == "EscalationResolved"]


@pytest.mark.skipif(not PG_DSN, reason="PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
                    "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
def test_the_api_on_postgresql() -> None:
    schema = f"lfc_{uuid.uuid4().hex[:12]}"
    url = f"{PG_DSN}?schema={schema}"
    try:
        demo = make_demo(url)
        with serving(url) as base:
            runs = call("GET", base + "api/runs").json["runs"]
            assert {r["run_id"] for r in runs} == {demo.completed, demo.waiting}
            before = last_seq(url, demo.waiting)
            bad = call("POST", resolve_url(base, demo.waiting), body={"output": {"total": "x"}})
            assert bad.status == 422
            assert last_seq(url, demo.waiting) == before
            good = call("POST", resolve_url(base, demo.waiting),
                        body={"output": good_price(base, demo.waiting)})
            assert good.status == 200, good
            assert good.json["status"] == "completed"
        assert travel.BOOKING_CALLS.count(idempotency_key(demo.waiting, "book")) == 1
    finally:
        asyncio.run(_drop(schema))


async def _drop(schema: str) -> None:
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL test needs it

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# -- the pages the API feeds -------------------------------------------------


def test_the_console_and_run_pages_are_served_with_their_assets(
        base: str, demo: DemoRuns) -> None:
    index = call("GET", base)
    assert index.status == 200
    assert index.headers["content-type"].startswith("text/html")
    page = call("GET", f"{base}runs/{demo.waiting}")
    assert page.status == 200
    assert page.headers["content-type"].startswith("text/html")
    for html in (index.text, page.text):
        assert demo.waiting not in html  # the shells hold no data: their scripts fetch it
    for asset in ("run.js", "run.css"):
        answer = call("GET", f"{base}assets/{asset}")
        assert answer.status == 200, asset
        assert answer.body


def test_the_page_document_is_served(base: str, demo: DemoRuns) -> None:
    answer = call("GET", f"{base}api/runs/{demo.waiting}/page")
    assert answer.status == 200, answer
    assert isinstance(answer.json, dict)
    assert call("GET", base + "api/runs/nosuchrun/page").status == 404


def test_documents_are_strict_json(base: str, demo: DemoRuns) -> None:
    for path in ("api/runs", f"api/runs/{demo.waiting}", f"api/runs/{demo.waiting}/events",
                 "api/escalations"):
        msgspec.json.decode(call("GET", base + path).body)  # refuses NaN and friends
