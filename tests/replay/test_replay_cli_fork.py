"""``fork`` on the command line never books twice: a fork of a run whose
booking happened reuses the origin's outcome, and ``--repeat-side-effects``
is passed through to the fork (and recorded), or refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerflow.examples.travel import BOOKING_CALLS
from ledgerflow.machines import idempotency_key
from ledgerflow.machines.events import ForkedFrom
from ledgerflow.replay.cli import main


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def demo(tmp_path: Path) -> tuple[str, str]:
    db = str(tmp_path / "ledgerflow.db")
    code, out = cli("demo", "--db", db)
    assert code == 0, out
    run_id = next(ln for ln in out.splitlines() if ln.startswith("run ")).split()[1].rstrip(":")
    return db, run_id


def forked_id(out: str) -> str:
    return next(ln for ln in out.splitlines() if ln.startswith("forked run ")).split()[2]


def test_fork_at_1_of_a_booked_run_does_not_book_again(demo: tuple[str, str]) -> None:
    db, run_id = demo
    key = idempotency_key(run_id, "book")
    assert BOOKING_CALLS.count(key) == 1
    code, out = cli("fork", run_id[:6], "--at", "1", "--db", db)
    assert code == 0, out
    new_id = forked_id(out)
    assert f"run {new_id}: completed" in out
    assert BOOKING_CALLS.count(key) == 1


def test_fork_repeat_side_effects_is_recorded_or_refused_in_one_line(
    demo: tuple[str, str],
) -> None:
    db, run_id = demo
    code, out = cli("fork", run_id, "--at", "1", "--repeat-side-effects", "--db", db)
    if "repeat_side_effects" not in ForkedFrom.__struct_fields__:
        # The log cannot record the choice yet: refused before anything is written.
        assert code == 1
        (line,) = [ln for ln in out.splitlines() if ln.strip()]
        assert line.startswith("Error: ")
        assert "repeat_side_effects" in line
        return
    assert code == 0, out
    _, log = cli("log", forked_id(out), "--format", "jsonl", "--db", db)
    marker = next(json.loads(ln) for ln in log.splitlines() if '"ForkedFrom"' in ln)
    assert marker["data"]["repeat_side_effects"] is True
