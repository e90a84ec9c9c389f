"""``resume --wait``: a run whose lease another live process holds is refused
at once with how long the lease has left, and with --wait the CLI waits for
the lease instead and then resumes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel_unreviewed
from ledgerflow.replay.cli import main

#: Owned by a process on another host: never taken over, only waited out.
ELSEWHERE = "another-host.example:4242:feedbeef"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def waiting(tmp_path: Path) -> tuple[str, str]:
    db = str(tmp_path / "w.db")
    code, out = cli("run", travel_unreviewed.__name__ + ":wf", "--goal",
                    '{"destination": "Lisbon", "passengers": 2}', "--db", db)
    assert code == 0, out
    return db, out.split()[1].rstrip(":")


def hold_lease(db: str, run_id: str, ttl_s: float) -> None:
    async def go() -> None:
        async with open_store(db) as store:
            assert await store.try_lease(run_id, ELSEWHERE, ttl_s)

    asyncio.run(go())


def test_resume_of_a_leased_run_is_refused_with_the_time_left(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    hold_lease(db, run_id, ttl_s=600)
    code, out = cli("resume", run_id, "--db", db)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert "being driven by another live process" in line
    assert ELSEWHERE in line
    assert "--wait" in line


def test_resume_wait_waits_out_a_lease_and_resumes(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    hold_lease(db, run_id, ttl_s=1.0)
    code, out = cli("resume", run_id[:6], "--wait", "60", "--db", db)
    assert code == 0, out
    assert f"run {run_id}: waiting" in out


def test_resume_wait_without_seconds_uses_the_default(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    hold_lease(db, run_id, ttl_s=1.0)
    code, out = cli("resume", run_id, "--db", db, "--wait")
    assert code == 0, out
    assert f"run {run_id}: waiting" in out


def test_resume_wait_that_runs_out_is_refused(waiting: tuple[str, str]) -> None:
    db, run_id = waiting
    hold_lease(db, run_id, ttl_s=600)
    code, out = cli("resume", run_id, "--wait", "0.2", "--db", db)
    assert code == 1
    assert "being driven by another live process" in out


@pytest.mark.parametrize("value", ["--wait=abc", "--wait=-1"])
def test_a_wait_that_is_not_seconds_is_a_usage_error(
    waiting: tuple[str, str], value: str
) -> None:
    db, run_id = waiting
    code, out = cli("resume", run_id, value, "--db", db)
    assert code == 2
    assert out.count("Error") == 1
