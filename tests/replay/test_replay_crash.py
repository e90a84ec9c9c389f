"""Kill -9 at every point of a run: resume finishes it, and no side effect
ever happens twice (the article's duplicated booking / double e-mail)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator, RunBusyError, RunNotFoundError, load_run_state
from ledgerflow.replay.verify import verify_run

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import replay_crashflow as flow  # noqa: E402


def killed_runs(tmp_path: Path, run_id: str
                ) -> Iterator[tuple[int, Path, Path, subprocess.CompletedProcess[str]]]:
    """The runs killed at points 1, 2, 3, ... in order, two child processes at a time
    (each point is its own store and ledger; the suite has two cores to fill)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        ahead: deque[tuple[int, Path, Path, Future[subprocess.CompletedProcess[str]]]] = deque()
        for crash_at in range(1, MAX_POINTS + 1):
            db, ledger = tmp_path / f"k{crash_at}.db", tmp_path / f"k{crash_at}.txt"
            ahead.append((crash_at, db, ledger,
                          pool.submit(run_until_killed, db, ledger, run_id, crash_at)))
            if len(ahead) == 2:
                at, db, ledger, child = ahead.popleft()
                yield at, db, ledger, child.result()
        while ahead:
            at, db, ledger, child = ahead.popleft()
            yield at, db, ledger, child.result()


def run_until_killed(
    db: Path, ledger: Path, run_id: str, crash_at: int
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASH_AT": str(crash_at), "CRASH_LEDGER": str(ledger),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, str(HERE / "replay_crashflow.py"), str(db), run_id],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )


MAX_POINTS = 400


@pytest.mark.slow
async def test_side_effect_not_repeated_after_crash_at_any_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Commits are pipelined, so how many appends a run takes (and so how many
    # crash points it has) depends on timing: kill at point 1, 2, 3, ... until
    # several runs in a row reach their end before the chosen point.
    outcomes: Counter[str] = Counter()
    points = finished_in_a_row = 0
    run_id = "run"
    for crash_at, db, ledger, killed in killed_runs(tmp_path, run_id):
        if killed.returncode == 0:
            acts = Counter(line.split()[0] for line in ledger.read_text().splitlines())
            assert acts == {"charge": 1, "notify": 1}, (crash_at, acts)
            finished_in_a_row += 1
            if finished_in_a_row == 5:
                break
            continue
        finished_in_a_row = 0
        points += 1
        assert killed.returncode == -9, (crash_at, killed.stdout, killed.stderr)
        monkeypatch.setenv("CRASH_LEDGER", str(ledger))
        monkeypatch.setenv("CRASH_AT", "0")
        async with open_store(db) as store:
            orch = Orchestrator(store, lease_wait_s=5.0)
            try:
                run = await orch.resume(run_id, flow.wf)
            except RunNotFoundError:
                outcomes["killed before the run was recorded"] += 1
                assert not ledger.exists()
                continue
            unknown = [t for t, e in run.state.escalations.items() if e.kind == "outcome_unknown"]
            if unknown:
                outcomes["escalated-unknown"] += 1
                assert unknown == ["notify"], run.state.escalations
                assert run.status == "waiting"
                # A person checks the world: did the e-mail go out?
                acted = ledger.read_text().count("notify ") if ledger.exists() else 0
                assert acted <= 1
                if acted:
                    key = (await load_run_state(store, run_id)).tasks["notify"].idempotency_key
                    run = await orch.resolve(run_id, "notify", output={"key": key}, by="test",
                                            workflow=flow.wf)
                else:
                    run = await orch.resolve(run_id, "notify", retry=True, by="test",
                                            workflow=flow.wf)
            else:
                outcomes["exactly-once"] += 1
            assert run.status == "completed", (crash_at, run.reason)
            acts = Counter(line.split()[0] for line in ledger.read_text().splitlines())
            assert acts == {"charge": 1, "notify": 1}, (crash_at, acts)
            report = await verify_run(store, run_id, workflow=flow.wf)
            assert report.ok, (crash_at, report.lines())
    print(f"\n{points} kill points: {dict(outcomes)}; duplicated: 0")
    assert outcomes["exactly-once"] > 0
    assert points >= 50
    assert outcomes["escalated-unknown"] > 0


async def test_a_run_driven_by_a_live_process_is_not_resumed_twice(tmp_path: Path) -> None:
    async with open_store(tmp_path / "runs.db") as store:
        assert await store.try_lease("busy", "someone-else:123", 30.0)
        with pytest.raises(RunBusyError, match="another live process"):
            await Orchestrator(store).resume("busy", flow.wf)
