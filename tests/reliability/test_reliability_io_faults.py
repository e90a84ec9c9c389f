"""Issue 12, scenario 2: real I/O faults during appends, and the way back.

(a) A full disk: a SQLite store on a 2 MB tmpfs, runs driven until the disk
is full: the append fails with the typed one-line ``StoreFullError``, nothing
is falsely acknowledged, and once a filler file is deleted the run resumes
and every log verifies (also after reopening).
(b) A database turned read-only during appends: SQLite on an ext4 image the
kernel remounts read-only on a disk error (a tmpfs cannot be remounted
read-only under an open writer: "mount point is busy"): a one-line error, no
false acknowledgement while read-only, and the run resumes once writes are
allowed again (unmount, e2fsck, mount) and verifies. The append fails with
``StoreFileSystemReadOnlyError`` (a ``StoreReadOnlyError``), one line.
When the error lands while the run's first batch is still being committed,
the run may never have been acknowledged at all, so the way back starts it
rather than resuming it. One finding stays open, a non-strict xfail: in
some trials the batch acknowledged just before the forced ext4 error is
gone after the remount, with or without e2fsck; it reproduces (rarely)
without ledgerflow, with plain write + fsync and plain sqlite3
(``benchmarks/ext4_abort_probe.py``). PostgreSQL refusing writes is in
test_reliability_pg_read_only.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from rel_acks import AckingStore, check_acks
from rel_iofaults import IoGoal, break_ext4, ext4_image, io_wf, on_call, remount_ext4, small_tmpfs

from ledgerflow.eventstore import (
    EventStore,
    EventStoreError,
    StoreFullError,
    StoreReadOnlyError,
    open_store,
)
from ledgerflow.machines import Orchestrator, RunResult
from ledgerflow.replay import verify_run


def _acking(inner: EventStore, ack_dir: Path) -> EventStore:
    ack_dir.mkdir(exist_ok=True)
    return cast(EventStore, AckingStore(inner, ack_dir / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl",
                                        effect_tasks=frozenset()))


async def _start_or_resume(orch: Orchestrator, run_id: str, goal: IoGoal) -> RunResult:
    """Continue a run a fault cut off (or start it, if not even its first event was kept)."""
    if await orch.store.run(run_id) is None:
        return await orch.start(io_wf, goal, run_id=run_id)
    return await orch.resume(run_id, io_wf)


async def _all_verified(store: EventStore, run_ids: list[str]) -> dict[str, str]:
    """Each run's status; asserts every log verifies."""
    statuses = {}
    for run_id in run_ids:
        report = await verify_run(store, run_id, workflow=io_wf)
        assert report.ok, (run_id, report.lines())
        summary = await store.run(run_id)
        assert summary is not None
        statuses[run_id] = summary.status
    return statuses


@pytest.fixture(autouse=True)
def _no_hooks_left() -> Iterator[None]:
    yield
    on_call.clear()  # a failed test must not leave its hook to the next


# --- (a) a full disk -----------------------------------------------------------------------


async def test_a_full_tmpfs_fails_an_append_typed_acknowledges_nothing_false_then_resumes(
    tmp_path: Path,
) -> None:
    ack_dir = tmp_path / "acks"
    with small_tmpfs(tmp_path / "fs") as fs:
        filler = fs / "filler"
        filler.write_bytes(b"\0" * 900_000)  # freed later: "space is back"
        db = fs / "runs.db"
        goal = IoGoal(pad="x" * 6000)
        run_ids: list[str] = []
        async with open_store(db) as inner:
            orch = Orchestrator(_acking(inner, ack_dir))
            failure: StoreFullError | None = None
            for i in range(400):
                run_ids.append(f"full-{i:03d}")
                try:
                    run = await orch.start(io_wf, goal, run_id=run_ids[-1])
                except StoreFullError as exc:
                    failure = exc
                    break
                assert run.status == "completed"
            assert failure is not None, "the 2 MB tmpfs never filled up"
            message = str(failure)
            print(f"disk full after {len(run_ids) - 1} runs: {type(failure).__name__}: {message}")
            assert "\n" not in message
            assert "is full" in message
            assert failure.run_id == run_ids[-1]
            full = await check_acks(inner, ack_dir)  # read back while the disk is still full
            assert full.problems == []
            filler.unlink()
            run = await _start_or_resume(orch, run_ids[-1], goal)
            assert run.status == "completed", run.reason
        async with open_store(db) as reopened:
            after = await check_acks(reopened, ack_dir)
            assert after.problems == []
            statuses = await _all_verified(reopened, run_ids)
        assert set(statuses.values()) == {"completed"}
        print(f"acknowledged events checked: {after.acknowledged_events}; appends never "
              f"acknowledged and absent: {after.unacknowledged_absent}, whole: "
              f"{after.unacknowledged_whole}")


# --- (b) SQLite: the file system goes read-only --------------------------------------------


async def _drive_until_read_only(store: EventStore, fs_break: object, run_id: str
                                 ) -> EventStoreError:
    orch = Orchestrator(store)
    first = await orch.start(io_wf, IoGoal(pad="y" * 200, tasks=6), run_id="ro-before")
    assert first.status == "completed"

    async def hook(run: str, task: str) -> None:
        if run == run_id and task == "t3":
            break_ext4(fs_break)  # type: ignore[arg-type]

    on_call.append(hook)
    with pytest.raises(EventStoreError) as info:
        await orch.start(io_wf, IoGoal(pad="y" * 200, tasks=6), run_id=run_id)
    on_call.clear()
    return info.value


@pytest.mark.xfail(strict=False, reason=(
    "below ledgerflow, on this kernel (6.18, loop-mounted ext4, errors=remount-ro): in some "
    "trials (7 of 16 on 2026-12-01) the batch acknowledged just before the forced ext4 error "
    "is gone after the remount: the WAL file's size reverts by exactly that batch's frames, "
    "with or without e2fsck (so not the harness). python -m benchmarks.ext4_abort_probe "
    "shows the same without ledgerflow, rarely: a write + fsync, or a sqlite3 WAL commit with "
    "synchronous=FULL, that returned success while the journal abort raced it, lost after "
    "the remount. ledgerflow acknowledges only what fsync acknowledged"))
async def test_sqlite_on_a_file_system_gone_read_only_mid_run_fails_typed_and_resumes(
    tmp_path: Path,
) -> None:
    ack_dir = tmp_path / "acks"
    with ext4_image(tmp_path) as fs:
        db = fs.mountpoint / "runs.db"
        inner = await open_store(db)
        try:
            error = await _drive_until_read_only(_acking(inner, ack_dir), fs, "ro-during")
            message = str(error)
            print(f"read-only file system: {type(error).__name__}: {message}")
            assert "\n" not in message
            during = await check_acks(inner, ack_dir)  # reads still work on the read-only fs
            assert during.problems == []
        finally:
            await inner.close()
        remount_ext4(fs)  # the admin's way back: unmount, e2fsck, mount
        async with open_store(db) as reopened:
            after = await check_acks(reopened, ack_dir)
            assert after.problems == []
            # Kept, or never acknowledged at all (the error hit its first batch).
            run = await _start_or_resume(Orchestrator(_acking(reopened, ack_dir)), "ro-during",
                                         IoGoal(pad="y" * 200, tasks=6))
            assert run.status == "completed", run.reason
            statuses = await _all_verified(reopened, ["ro-before", "ro-during"])
        assert set(statuses.values()) == {"completed"}
        print(f"acknowledged events checked: {after.acknowledged_events}")


async def test_sqlite_append_on_a_read_only_file_system_is_a_store_read_only_error(
    tmp_path: Path,
) -> None:
    with ext4_image(tmp_path) as fs:
        inner = await open_store(fs.mountpoint / "runs.db")
        try:
            error = await _drive_until_read_only(inner, fs, "ro-typed")
        finally:
            await inner.close()
        assert isinstance(error, StoreReadOnlyError), f"{type(error).__name__}: {error}"
