"""``verify`` checks state snapshots; replaying to a seq from one is the full fold.

A snapshot is outside the hash chain, and a resume trusts one whose hash
still matches the log: an edited snapshot is what ``verify`` must find, and
name (run, seq, field), failing with the usual exit code.
"""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.eventstore.core_snapshots import StoredSnapshot
from ledgerflow.examples import travel
from ledgerflow.machines import Orchestrator, load_run_state
from ledgerflow.machines.snapshots import SNAPSHOT_FORMAT, decode_snapshot, encode_snapshot
from ledgerflow.replay.cli import main
from ledgerflow.replay.cli_support import EXIT_REFUSED
from ledgerflow.replay.verify import VerifyReport, verify_run

GOAL = travel.TripGoal(destination="Lisbon", passengers=2)


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


async def _travel(store: EventStore, every: int = 5) -> str:
    run = await Orchestrator(store, snapshot_every=every, durable_dispatch=True).start(
        travel.wf, GOAL)
    assert run.status == "completed"
    assert len(await store.snapshots(run.run_id)) == 2
    return run.run_id


def _edited(data: bytes, field: int, value: Any) -> bytes:
    """The snapshot bytes with field ``field`` of the run state set to ``value``."""
    shape, run = msgspec.json.decode(zlib.decompress(data))
    run[field] = value
    return zlib.compress(msgspec.json.encode([shape, run]))


def test_verify_passes_on_a_run_with_snapshots_and_names_their_seqs(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    async def go() -> tuple[str, list[int], VerifyReport]:
        async with open_store(db) as store:
            run_id = await _travel(store)
            seqs = [s.seq for s in await store.snapshots(run_id)]
            return run_id, seqs, await verify_run(store, run_id, workflow=travel.wf)

    run_id, seqs, report = asyncio.run(go())
    assert report.ok, report.lines()
    assert [c.name for c in report.checks] == ["chain", "transitions", "snapshots",
                                               "determinism"]
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == 0, out
    assert (f"PASS  snapshots: 2 snapshots (seqs {seqs[0]}, {seqs[1]}) equal the log's fold "
            "there and hold its chain hash") in out
    assert out.splitlines()[-1] == "4 checks passed"


def test_an_edited_snapshot_is_trusted_by_a_load_and_caught_by_verify(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    async def go() -> tuple[str, StoredSnapshot, VerifyReport]:
        async with open_store(db) as store:
            run_id = await _travel(store)
            snap = await store.latest_snapshot(run_id)
            assert snap is not None
            # Field 22 is the run's reason: an edit a reader would believe.
            await store.put_snapshot(run_id, snap.seq, snap.hash, snap.format,
                                     _edited(snap.state, 22, "all fine, nothing to see"))
            # The hash still matches the log, so a load starts from it: by design,
            # the snapshot is trusted there, and verify is the check that finds it.
            loaded = await load_run_state(store, run_id, at=snap.seq)
            assert loaded.reason == "all fine, nothing to see"
            return run_id, snap, await verify_run(store, run_id)

    run_id, snap, report = asyncio.run(go())
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.name == "snapshots"
    assert failed.seq == snap.seq
    assert f"The snapshot of run '{run_id}' at seq {snap.seq}" in failed.message
    assert "differs from the log's fold there in reason" in failed.message
    code, out = cli("verify", run_id, "--db", str(db))
    assert code == EXIT_REFUSED
    assert f"FAIL  snapshots: The snapshot of run '{run_id}' at seq {snap.seq}" in out


async def test_verify_names_the_task_field_an_edited_snapshot_changed(tmp_path: Path) -> None:
    async with open_store(tmp_path / "runs.db") as store:
        run_id = await _travel(store)
        older = (await store.snapshots(run_id))[0]
        state = decode_snapshot(older.state)
        task = next(t for t in state.tasks.values() if t.output is not None)
        task.output = {**(task.output or {}), "forged": True}
        await store.put_snapshot(run_id, older.seq, older.hash, older.format,
                                 encode_snapshot(state))
        report = await verify_run(store, run_id)
    assert not report.ok
    (failed,) = [c for c in report.checks if not c.ok]
    assert f"in tasks[{task.id}].output" in failed.message


@pytest.mark.parametrize("spoil", ["garbage", "hash", "past_the_end"])
async def test_verify_fails_a_snapshot_that_no_load_would_use(
    tmp_path: Path, spoil: str
) -> None:
    async with open_store(tmp_path / "runs.db") as store:
        run_id = await _travel(store)
        snap = await store.latest_snapshot(run_id)
        assert snap is not None
        last = await store.last_seq(run_id)
        seq, hash_, data = snap.seq, snap.hash, snap.state
        if spoil == "garbage":
            data = b"\x00garbage"
        elif spoil == "hash":
            hash_ = "0" * 64
        else:
            seq = last + 5
        await store.put_snapshot(run_id, seq, hash_, SNAPSHOT_FORMAT, data)
        report = await verify_run(store, run_id)
    (failed,) = [c for c in report.checks if not c.ok]
    assert failed.name == "snapshots"
    assert failed.seq == seq
    assert {"garbage": "cannot be used", "hash": "names hash 000000000000",
            "past_the_end": "is past the end of the log"}[spoil] in failed.message


async def test_a_snapshot_of_another_format_is_reported_not_checked(tmp_path: Path) -> None:
    async with open_store(tmp_path / "runs.db") as store:
        run_id = await _travel(store)
        await store.put_snapshot(run_id, 3, "1" * 64, SNAPSHOT_FORMAT + 1, b"from the future")
        report = await verify_run(store, run_id)
    assert report.ok, report.lines()
    snapshots = next(c for c in report.checks if c.name == "snapshots")
    assert "1 of another format not checked (a resume ignores it)" in snapshots.message


async def test_an_edit_before_the_snapshot_is_not_seen_by_a_load_but_fails_verify(
    tmp_path: Path,
) -> None:
    db = tmp_path / "runs.db"
    async with open_store(db) as store:
        run_id = await _travel(store)
        snap = await store.latest_snapshot(run_id)
        assert snap is not None
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE events SET data = json_set(data, '$.reason', 'edited') "
                     "WHERE run_id = ? AND seq = 2", (run_id,))
    conn.close()
    async with open_store(db) as store:
        # From the snapshot on the chain is intact: the tail checks and folds.
        state = await load_run_state(store, run_id, check_chain=True)
        assert state.status.value == "completed"
        report = await verify_run(store, run_id)
    chain = report.checks[0]
    assert (chain.name, chain.ok, chain.seq) == ("chain", False, 2)


def test_replay_to_a_seq_from_a_snapshot_equals_the_full_fold(tmp_path: Path) -> None:
    async def go() -> tuple[str, int]:
        async with open_store(tmp_path / "runs.db") as store:
            run_id = await _travel(store, every=4)
            last = await store.last_seq(run_id)
            orch = Orchestrator(store)
            for at in range(1, last + 1):
                from_snapshot = await orch.state(run_id, at)
                folded = await load_run_state(store, run_id, at=at, snapshots=False)
                assert encode_snapshot(from_snapshot) == encode_snapshot(folded), at
            return run_id, last

    run_id, last = asyncio.run(go())
    code, out = cli("replay", run_id, "--to", str(last - 1), "--json",
                    "--db", str(tmp_path / "runs.db"))
    assert code == 0, out
    assert msgspec.json.decode(out)["seq"] == last - 1
