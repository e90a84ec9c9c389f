"""The run page's data: redaction for display, the page document, the HTML, ``ledgerflow view``.

Runs are real (the travel demo and a small run with journaled steps on
SQLite files); the task states the page derives at every seq are compared
with ``ledgerflow replay --to N --json``'s own fold.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from console_server import DemoRuns, make_demo
from pydantic import BaseModel, Field, SecretStr

from ledgerflow.console.cli import main
from ledgerflow.console.page import SCRIPTS, render_console, render_run_page, script_json
from ledgerflow.console.page_data import build_page_document, page_document, task_depths
from ledgerflow.console.redaction import (
    REDACTED,
    looks_secret,
    redact,
    redact_run_document,
    redact_schema,
)
from ledgerflow.eventstore import Envelope, open_store
from ledgerflow.examples import travel
from ledgerflow.machines import AgentContext, Workflow
from ledgerflow.replay.timeline import decision_log, rebuild

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.view_page import make_big_run  # noqa: E402
from benchmarks.view_page import wf as big_wf  # noqa: E402


class Card(BaseModel):
    number: str
    cvc: str = Field(json_schema_extra={"redact": True})


class Login(BaseModel):
    user: str
    password: SecretStr
    pin: str | None = Field(default=None, json_schema_extra={"redact": True})
    card: Card | None = None
    cards: list[Card] = []


# -- redaction ---------------------------------------------------------------


def test_redact_follows_the_contract_schema() -> None:
    value = {"user": "ana", "password": "hunter2", "pin": "1234",
             "card": {"number": "4111", "cvc": "123"},
             "cards": [{"number": "5500", "cvc": "999"}], "note": "hi"}
    masked = redact(value, Login.model_json_schema())
    assert masked == {"user": "ana", "password": REDACTED, "pin": REDACTED,
                      "card": {"number": "4111", "cvc": REDACTED},
                      "cards": [{"number": "5500", "cvc": REDACTED}], "note": "hi"}
    assert value["password"] == "hunter2"  # pure: the argument is untouched
    assert redact({"pin": None}, Login.model_json_schema()) == {"pin": None}


def test_redact_whole_secret_objects_and_unions() -> None:
    class Vault(BaseModel):
        box: Card = Field(json_schema_extra={"redact": True})
        either: SecretStr | int = 0

    masked = redact({"box": {"number": "1", "cvc": "2"}, "either": 7}, Vault.model_json_schema())
    assert masked == {"box": REDACTED, "either": REDACTED}


def test_without_a_schema_secret_looking_names_are_masked() -> None:
    value = {"api_key": "sk-1", "nested": {"Authorization": "Bearer x", "tokens": 12},
             "list": [{"client_secret": "s", "passengers": 2}], "apiKey": "k",
             "db_password": "p", "credentials": {"a": 1}}
    assert redact(value, None) == {
        "api_key": REDACTED, "nested": {"Authorization": REDACTED, "tokens": 12},
        "list": [{"client_secret": REDACTED, "passengers": 2}], "apiKey": REDACTED,
        "db_password": REDACTED, "credentials": REDACTED}
    assert [looks_secret(n) for n in ("access_token", "max_tokens", "author", "X-Api-Key")] \
        == [True, False, False, True]


def test_redact_schema_drops_defaults_of_secrets_only() -> None:
    schema = {"properties": {"pin": {"type": "string", "redact": True, "default": "0000"},
                             "n": {"type": "integer", "default": 3}}}
    assert redact_schema(schema) == {"properties": {"pin": {"type": "string", "redact": True},
                                                    "n": {"type": "integer", "default": 3}}}


class LoginGoal(BaseModel):
    user: str
    password: str = Field(json_schema_extra={"redact": True})
    pin: str = Field(json_schema_extra={"format": "password"})


secret_wf = Workflow("console-secret-contracts", goal=LoginGoal)


class SecretIn(BaseModel):
    user: str
    password: str = Field(json_schema_extra={"writeOnly": True})


class SecretOut(BaseModel):
    session: str = Field(json_schema_extra={"redact": True})
    confidence: float


@secret_wf.agent(input=SecretIn, output=SecretOut, min_confidence=0.9)
async def login(inp: SecretIn, ctx: AgentContext) -> SecretOut:
    return SecretOut(session="sess-never-shown", confidence=0.5)


@secret_wf.planner
async def plan_login(goal: LoginGoal, ctx: AgentContext) -> Any:
    from ledgerflow.contracts import Plan, Task  # noqa: PLC0415

    return Plan(tasks=[Task(id="login", agent="login",
                            inputs={"user": "$goal.user", "password": "$goal.password"})])


async def _secret_run(db: Path) -> tuple[str, list[Envelope]]:
    from ledgerflow.machines import Orchestrator  # noqa: PLC0415

    async with open_store(db) as store:
        goal = {"user": "ana", "password": "pw-never-shown", "pin": "pin-never-shown"}
        run = await Orchestrator(store).start(secret_wf, goal)
        assert run.status == "waiting", run.reason
        return run.run_id, await store.read_all(run.run_id)


async def test_no_secret_reaches_any_document(tmp_path: Path) -> None:
    db = tmp_path / "secret.db"
    run_id, envs = await _secret_run(db)
    raw = b"".join(env.data for env in envs)
    for secret in (b"pw-never-shown", b"sess-never-shown", b"pin-never-shown"):
        assert secret not in raw  # the log holds references; the vault the values
    async with open_store(db) as store:
        page = await page_document(store, run_id, workflow=secret_wf)
    replay_doc = redact_run_document(rebuild(run_id, envs).to_dict(), secret_wf)
    for doc in (page, replay_doc, json.loads(json.dumps(render_run_page(page, api=None)))):
        text = json.dumps(doc)
        for shown in ("pw-never-shown", "sess-never-shown", "pin-never-shown"):
            assert shown not in text
    assert page["escalations"][0]["candidate"]["session"] == REDACTED
    assert page["escalations"][0]["output_schema"]["properties"]["session"]["redact"] is True
    dispatch = next(e for e in page["events"] if e["type"] == "TaskDispatched")
    assert dispatch["input"] == {"user": "ana", "password": REDACTED}
    # Without the workflow, a key named like a secret is still masked.
    unknown = redact_run_document(rebuild(run_id, envs).to_dict(), None)
    assert unknown["tasks"]["login"]["input"]["password"] == REDACTED


# -- the page document ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoRuns]:
    db = tmp_path_factory.mktemp("demo") / "demo.db"
    return db, make_demo(db)


def _read(db: Path, run_id: str) -> list[Envelope]:
    async def go() -> list[Envelope]:
        async with open_store(db, create=False, read_only=True) as store:
            return await store.read_all(run_id)
    return asyncio.run(go())


def _states_by_seq(doc: dict[str, Any]) -> dict[int, dict[str, str]]:
    states: dict[str, str] = {}
    out: dict[int, dict[str, str]] = {}
    for event in doc["events"]:
        states.update(event.get("status", {}))
        out[event["seq"]] = dict(states)
    return out


def _check_states_match_replay(run_id: str, envs: list[Envelope], doc: dict[str, Any]) -> None:
    derived = _states_by_seq(doc)
    for env in envs:
        state = rebuild(run_id, envs, at=env.seq)
        expected = {tid: t["status"] for tid, t in state.to_dict()["tasks"].items()}
        assert derived[env.seq] == expected, f"seq {env.seq}"


def test_page_states_at_every_seq_are_replays(demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    for run_id in (runs.completed, runs.waiting):
        envs = _read(db, run_id)
        _check_states_match_replay(run_id, envs, build_page_document(run_id, envs))


def test_page_has_one_attempt_per_dispatch(demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    envs = _read(db, runs.completed)
    doc = build_page_document(runs.completed, envs, travel.wf)
    dispatched = [(r.event.task_id, r.event.attempt) for r in decision_log(envs)  # type: ignore[attr-defined]
                  if r.type == "TaskDispatched"]
    assert [(a["task"], a["attempt"]) for a in doc["attempts"]] == dispatched
    outcomes = {(a["task"], a["attempt"]): a for a in doc["attempts"]}
    assert outcomes[("flights", 1)]["outcome"] == "timeout"
    assert "retried" in outcomes[("flights", 1)]["marks"]
    assert outcomes[("hotels", 1)]["outcome"] == "rejected"
    assert outcomes[("price", 1)]["outcome"] == "escalated"
    assert outcomes[("book", 1)]["outcome"] == "ok"
    assert doc["run"]["totals"]["attempts"] == len(dispatched)
    assert [e["seq"] for e in doc["events"]] == [env.seq for env in envs]


def test_page_events_carry_reason_diff_and_exact_io(demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    envs = _read(db, runs.waiting)
    doc = build_page_document(runs.waiting, envs)
    rows = {r.seq: r for r in decision_log(envs)}
    for event in doc["events"]:
        row = rows[event["seq"]]
        assert event["reason"] == row.reason
        if row.type == "TaskDispatched":
            assert event["input"] == row.event.input  # type: ignore[attr-defined]
        if row.type == "OutputReceived":
            assert event["output"] == row.event.output  # type: ignore[attr-defined]
    escalated = next(e for e in doc["events"] if e["type"] == "TaskEscalated")
    assert escalated["trouble"] is True
    assert {"task": "price", "field": "status", "before": "validating",
            "after": "escalated"} in escalated["changes"]


async def test_page_document_finds_the_recorded_workflow(demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    async with open_store(db, create=False, read_only=True) as store:
        doc = await page_document(store, runs.waiting)
    (esc,) = doc["escalations"]
    assert esc["task_id"] == "price"
    assert esc["kind"] == "low_confidence"
    assert esc["candidate"]["total"] > 0
    assert esc["output_schema"]["title"] == "PricingOutput"
    assert esc["seq"] == next(e["seq"] for e in doc["events"] if e["type"] == "TaskEscalated")


async def test_steps_sit_in_their_attempts_and_states_match(tmp_path: Path) -> None:
    db = tmp_path / "steps.db"
    run_id = await make_big_run(db, tasks=60, steps=3)
    async with open_store(db) as store:
        envs = await store.read_all(run_id)
        doc = await page_document(store, run_id, workflow=big_wf)
    _check_states_match_replay(run_id, envs, doc)
    first = doc["attempts"][0]
    assert [s["kind"] for s in first["steps"]] == ["llm", "tool", "llm"]
    step_events = [e for e in doc["events"] if "step_seq" in e]
    assert len(step_events) == sum(len(a["steps"]) for a in doc["attempts"])
    assert "tok-never-shown" not in json.dumps(doc)


def test_task_depths_layers_and_cycles() -> None:
    assert task_depths({"a": [], "b": ["a"], "c": ["b", "a"], "d": []}) == \
        {"a": 0, "b": 1, "c": 2, "d": 0}
    assert task_depths({"x": ["y"], "y": ["x"], "z": ["nope"]}) == {"x": 0, "y": 0, "z": 0}
    chain = {f"t{i}": [f"t{i - 1}"] if i else [] for i in range(1500)}
    assert task_depths(chain)["t1499"] == 1499


# -- the HTML ----------------------------------------------------------------------


def test_one_file_page_inlines_everything_escaped(demo: tuple[Path, DemoRuns]) -> None:
    db, runs = demo
    doc = build_page_document(runs.waiting, _read(db, runs.waiting))
    doc["run"]["reason"] = "</script><script>alert(1)</script><!--"
    html = render_run_page(doc, api=None)
    assert "<script>alert(1)" not in html
    data = re.search(r'<script type="application/json" id="run-data">(.*?)</script>', html,
                     re.S)
    assert data is not None
    assert json.loads(data.group(1)) == json.loads(json.dumps(doc))
    assert 'src="' not in html
    assert "href=\"/assets" not in html
    assert json.loads(script_json({"a": "\u2028&<>"})) == {"a": "\u2028&<>"}


def test_console_pages_have_no_inline_script() -> None:
    for html in (render_console(api="/api"), render_run_page(None, api="/api")):
        scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        assert [attrs for attrs, _ in scripts] == \
            [f' src="/assets/{name}" defer' for name in SCRIPTS]
        assert all(not body.strip() for _, body in scripts)
        assert not re.search(r"\son[a-z]+=", html)  # no inline event handler
        assert 'data-api="/api"' in html
    with pytest.raises(ValueError, match="needs a document"):
        render_run_page(None, api=None)


# -- ledgerflow view ------------------------------------------------------------------


def test_view_writes_the_one_file_page(demo: tuple[Path, DemoRuns], tmp_path: Path) -> None:
    db, runs = demo
    out = tmp_path / "run.html"
    result = CliRunner().invoke(main, ["view", runs.waiting[:8], "--out", str(out),
                                       "--db", str(db)])
    assert result.exit_code == 0, result.output
    size = out.stat().st_size
    assert result.output.strip() == (f"wrote {out} ({size:,} bytes): run {runs.waiting}, "
                                     f"{len(_read(db, runs.waiting))} events")
    assert 'id="run-data"' in out.read_text(encoding="utf-8")
    missing = CliRunner().invoke(main, ["view", "nope", "--db", str(db)])
    assert missing.exit_code == 1
    assert "nope" in missing.output


def test_view_needs_no_ui_extra(demo: tuple[Path, DemoRuns], tmp_path: Path) -> None:
    db, runs = demo
    out = tmp_path / "run.html"
    # starlette and uvicorn made unimportable, as without the [ui] extra.
    code = ("import sys; sys.modules['starlette'] = None; sys.modules['uvicorn'] = None\n"
            "from ledgerflow.console.cli import main\n"
            f"main(['view', {runs.completed!r}, '--out', {str(out)!r}, '--db', {str(db)!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 10_000
