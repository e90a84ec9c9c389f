"""The console's guard over a real server: tokens, Host, cross-site POSTs, body size, headers,
bind rules in the CLI, and no secret field in any answer."""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from console_server import (
    DemoRuns,
    call,
    call_chunked,
    call_declaring,
    last_seq,
    make_demo,
    serving,
)
from pydantic import BaseModel, Field, SecretStr

from ledgerflow.console import ui_cli
from ledgerflow.console.cli import main
from ledgerflow.console.security import CSP, allowed_hosts, check_bind, is_loopback
from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import open_store
from ledgerflow.machines import AgentContext, Orchestrator, Workflow

TOKEN = "t0k3n-for-tests"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ledgerflow.db"


@pytest.fixture
def demo(db: Path) -> DemoRuns:
    return make_demo(db)


@pytest.fixture
def guarded(db: Path, demo: DemoRuns) -> Iterator[str]:
    with serving(db, token=TOKEN) as url:
        yield url


@pytest.fixture
def base(db: Path, demo: DemoRuns) -> Iterator[str]:
    with serving(db) as url:
        yield url


def resolve_url(base: str, run_id: str) -> str:
    return f"{base}api/runs/{run_id}/tasks/price/resolve"


# -- the token ---------------------------------------------------------------


def test_with_a_token_every_api_call_needs_it(guarded: str, demo: DemoRuns) -> None:
    paths = ["api/runs", f"api/runs/{demo.waiting}", f"api/runs/{demo.waiting}/events",
             f"api/runs/{demo.waiting}/page", "api/escalations", "api/nothing-here"]
    for path in paths:
        for token in (None, "wrong", TOKEN[:-1], TOKEN + "x", ""):
            answer = call("GET", guarded + path, token=token)
            assert answer.status == 401, (path, token)
            assert answer.headers["www-authenticate"].startswith("Bearer")
    for path in paths[:-1]:
        assert call("GET", guarded + path, token=TOKEN).status == 200, path
    scheme = call("GET", guarded + "api/runs", headers={"Authorization": f"Basic {TOKEN}"})
    assert scheme.status == 401


def test_a_post_without_the_token_is_refused_and_appends_nothing(
        guarded: str, db: Path, demo: DemoRuns) -> None:
    before = last_seq(db, demo.waiting)
    answer = call("POST", resolve_url(guarded, demo.waiting), body={"abandon": True})
    assert answer.status == 401
    assert last_seq(db, demo.waiting) == before
    ok = call("POST", resolve_url(guarded, demo.waiting), body={"abandon": True}, token=TOKEN)
    assert ok.status == 200, ok
    assert last_seq(db, demo.waiting) > before


def test_the_html_shells_and_assets_need_no_token(guarded: str, demo: DemoRuns) -> None:
    for path in ("", f"runs/{demo.waiting}", "assets/run.js", "assets/run.css"):
        answer = call("GET", guarded + path)
        assert answer.status == 200, path
        assert TOKEN not in answer.text


# -- cross-site requests, Host, size, media type ------------------------------


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://127.0.0.1:1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
def test_a_cross_site_post_is_refused(base: str, db: Path, demo: DemoRuns,
                                      headers: dict[str, str]) -> None:
    before = last_seq(db, demo.waiting)
    answer = call("POST", resolve_url(base, demo.waiting), body={"abandon": True},
                  headers=headers)
    assert answer.status == 403, answer
    assert last_seq(db, demo.waiting) == before


def test_a_post_from_the_console_own_page_is_taken(base: str, db: Path, demo: DemoRuns) -> None:
    origin = base.rstrip("/")
    answer = call("POST", resolve_url(base, demo.waiting), body={"abandon": True},
                  headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert answer.status == 200, answer


def test_a_foreign_host_is_refused(base: str, db: Path, demo: DemoRuns) -> None:
    port = base.rstrip("/").rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1:1", f"10.0.0.1:{port}"):
        assert call("GET", base + "api/runs", headers={"Host": host}).status == 400, host
        assert call("GET", base, headers={"Host": host}).status == 400, host
        before = last_seq(db, demo.waiting)
        answer = call("POST", resolve_url(base, demo.waiting), body={"abandon": True},
                      headers={"Host": host})
        assert answer.status == 400
        assert last_seq(db, demo.waiting) == before
    for host in (f"localhost:{port}", f"127.0.0.1:{port}"):
        assert call("GET", base + "api/runs", headers={"Host": host}).status == 200, host


def test_a_body_over_the_limit_is_413(db: Path, demo: DemoRuns) -> None:
    with serving(db, max_body=4096) as base:
        before = last_seq(db, demo.waiting)
        big = {"output": {"total": 1.0, "line_items": [], "confidence": 0.9}, "note": "x" * 5000}
        assert call("POST", resolve_url(base, demo.waiting), body=big).status == 413
        chunks = [b'{"abandon": true, "note": "', b"y" * 3000, b"y" * 3000, b'"}']
        streamed = call_chunked(base, f"/api/runs/{demo.waiting}/tasks/price/resolve", chunks,
                                {"Content-Type": "application/json",
                                 "Host": base.removeprefix("http://").rstrip("/")})
        assert streamed.status == 413
        assert last_seq(db, demo.waiting) == before


def test_the_default_limit_is_one_mebibyte(base: str, db: Path, demo: DemoRuns) -> None:
    before = last_seq(db, demo.waiting)
    path = f"/api/runs/{demo.waiting}/tasks/price/resolve"
    json_type = {"Content-Type": "application/json"}
    # Refused from the declared length alone: the body is never waited for.
    assert call_declaring(base, path, (1 << 20) + 1, json_type).status == 413
    assert call_declaring(base, path, 10 << 30, json_type).status == 413
    assert last_seq(db, demo.waiting) == before
    # Up to the limit the body is read (and this one, a note of ~1 MiB, refused by the log).
    near = call("POST", resolve_url(base, demo.waiting),
                body={"abandon": True, "note": "z" * ((1 << 20) - 100)})
    assert near.status != 413


def test_a_post_must_be_json(base: str, db: Path, demo: DemoRuns) -> None:
    before = last_seq(db, demo.waiting)
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", None):
        answer = call("POST", resolve_url(base, demo.waiting), raw=b'{"abandon": true}',
                      content_type=media)
        assert answer.status == 415, media
    assert last_seq(db, demo.waiting) == before
    charset = call("POST", resolve_url(base, demo.waiting), raw=b'{"abandon": true}',
                   content_type="application/json; charset=utf-8")
    assert charset.status == 200


def test_every_answer_carries_the_security_headers(guarded: str, demo: DemoRuns) -> None:
    answers = [
        call("GET", guarded),
        call("GET", guarded + "assets/run.js"),
        call("GET", guarded + "assets/missing.js"),
        call("GET", guarded + "api/runs"),
        call("GET", guarded + "api/runs", token=TOKEN),
        call("GET", guarded + "api/runs/nosuchrun", token=TOKEN),
        call("GET", guarded + "api/runs", token=TOKEN, headers={"Host": "evil.example"}),
        call("POST", resolve_url(guarded, demo.waiting), body={}, token=TOKEN),
    ]
    assert [a.status for a in answers] == [200, 200, 404, 401, 200, 404, 400, 422]
    for answer in answers:
        assert answer.headers["content-security-policy"] == CSP
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert answers[4].headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in CSP
    assert "script-src 'self';" in CSP


# -- bind rules and the command line ------------------------------------------


def test_loopback_and_bind_rules() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "example.com"))
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", "t")
    with pytest.raises(Exception, match="without a token"):
        check_bind("0.0.0.0", None)
    assert allowed_hosts("0.0.0.0", 80) is None
    hosts = allowed_hosts("10.0.0.5", 8000)
    assert hosts == frozenset({"10.0.0.5:8000"})
    loop = allowed_hosts("127.0.0.1", 8765)
    assert loop is not None
    assert {"127.0.0.1:8765", "localhost:8765", "[::1]:8765"} <= loop


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_binding_another_address_without_a_token_is_refused(db: Path, host: str) -> None:
    result = CliRunner().invoke(main, ["ui", "--host", host, "--db", str(db)],
                                env={"LEDGERFLOW_UI_TOKEN": ""})
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert f"Refusing to serve the console on {host} without a token" in lines[0]
    assert "--token" in lines[0]


def test_without_the_extra_ui_says_what_to_install(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ui_cli, "_has_extra", lambda: False)
    result = CliRunner().invoke(main, ["ui", "--db", str(db)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {ui_cli.EXTRA_HINT}"]
    assert "pip install 'ledgerflow[ui]'" in result.output


def test_the_cli_never_imports_the_asgi_stack_until_ui_runs() -> None:
    code = ("import sys, ledgerflow, ledgerflow.console.cli; "
            "bad = [m for m in ('starlette', 'uvicorn') if m in sys.modules]; "
            "sys.exit(f'imported {bad}' if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_missing_store_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["ui", "--port", "0", "--db", str(tmp_path / "no.db")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(db: Path, demo: DemoRuns) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["ui", "--port", str(port), "--db", str(db)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in lines[0]


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            return proc.stdout.readline()
        if proc.poll() is not None:
            break
    raise AssertionError("ledgerflow ui printed no URL")


def test_ledgerflow_ui_prints_its_url_takes_the_env_token_and_stops_on_ctrl_c(
        db: Path, demo: DemoRuns) -> None:
    env = {**os.environ, "LEDGERFLOW_UI_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledgerflow.console.cli", "ui", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = _read_line(proc, time.monotonic() + 60)
        found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert found, line
        url = found.group(1)
        assert TOKEN not in line
        assert call("GET", url + "api/runs").status == 401
        answer = call("GET", url + "api/runs", token=TOKEN)
        assert answer.status == 200
        assert {r["run_id"] for r in answer.json["runs"]} == {demo.completed, demo.waiting}
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "console stopped" in out
    assert "Traceback" not in err


# -- secrets -------------------------------------------------------------------

SECRETS = ("hunter2-pass", "pin-4321", "otp-777999", "fresh-pass-88", "fresh-pin-55")


class LoginGoal(BaseModel):
    user: str
    otp: str = Field(json_schema_extra={"redact": True})
    confident: bool


class LoginInput(BaseModel):
    user: str
    otp: str = Field(json_schema_extra={"redact": True})
    confident: bool


class LoginOutput(BaseModel):
    user: str
    password: SecretStr
    pin: str = Field(json_schema_extra={"redact": True})
    confidence: float


secret_wf = Workflow("console-secrets", goal=LoginGoal)


@secret_wf.planner
async def plan_login(goal: LoginGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="login", agent="login", inputs={
        "user": "$goal.user", "otp": "$goal.otp", "confident": "$goal.confident"})])


@secret_wf.agent(input=LoginInput, output=LoginOutput, min_confidence=0.7)
async def login(inp: LoginInput, ctx: AgentContext) -> object:
    # A dict, not the model: the raw output (OutputReceived) then holds the password itself.
    return {"user": inp.user, "password": "hunter2-pass", "pin": "pin-4321",
            "confidence": 0.9 if inp.confident else 0.3}


def test_no_secret_field_is_in_any_answer(db: Path) -> None:
    async def start() -> tuple[str, str]:
        async with open_store(db) as store:
            orch = Orchestrator(store)
            done = await orch.start(secret_wf, {"user": "ana", "otp": "otp-777999",
                                                "confident": True})
            waiting = await orch.start(secret_wf, {"user": "ana", "otp": "otp-777999",
                                                   "confident": False})
            return done.run_id, waiting.run_id

    done, waiting = asyncio.run(start())
    raw = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
    assert b"pin-4321" in raw  # the log holds them: the console must not show them
    with serving(db, workflows=[secret_wf]) as base:
        paths = ["", f"runs/{done}", "api/runs", "api/escalations"]
        for rid in (done, waiting):
            paths += [f"api/runs/{rid}", f"api/runs/{rid}/events", f"api/runs/{rid}/page",
                      f"api/runs/{rid}?to=3"]
        answers = {p: call("GET", base + p) for p in paths}
        resolved = call("POST", f"{base}api/runs/{waiting}/tasks/login/resolve", body={
            "output": {"user": "ana", "password": "fresh-pass-88", "pin": "fresh-pin-55",
                       "confidence": 0.95}})
        assert resolved.status == 200, resolved
        answers["resolve"] = resolved
        answers["events after"] = call("GET", f"{base}api/runs/{waiting}/events")
        answers["page after"] = call("GET", f"{base}api/runs/{waiting}/page")
        bad = call("POST", f"{base}api/runs/{done}/tasks/login/resolve", body={
            "output": {"user": "ana", "password": "fresh-pass-88", "pin": 5}})
        answers["refused"] = bad
    for path, answer in answers.items():
        assert answer.status in (200, 422), (path, answer)
        for secret in SECRETS:
            assert secret not in answer.text, (path, secret)
    inbox = answers["api/escalations"].json["escalations"]
    assert [e["task_id"] for e in inbox] == ["login"]
    assert inbox[0]["candidate"]["pin"] == "[redacted]"
    assert inbox[0]["schema"]["properties"]["pin"]["redact"] is True
    assert answers[f"api/runs/{done}"].json["goal"]["otp"] == "[redacted]"
    assert answers[f"api/runs/{done}"].json["goal"]["user"] == "ana"
