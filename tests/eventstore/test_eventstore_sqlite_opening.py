"""SQLite opens: concurrent first opens, existing-only and read-only opens, unreadable rows."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from eventstore_helpers import ev

from ledgerflow.eventstore import (
    EventUnreadableError,
    NotAStoreError,
    SchemaVersionError,
    SQLiteEventStore,
    StoreNotFoundError,
    check_chain,
    open_store,
)

NOBODY = 65534
EXISTING_ONLY = pytest.mark.parametrize(
    "options", [{"create": False}, {"read_only": True}], ids=["existing", "ro"]
)


def files_of(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file in ``folder``: its SHA-256 and mode, to prove nothing was written."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
        for p in sorted(folder.iterdir())
    }


def tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


async def make_store_file(path: Path, events: int = 0) -> None:
    async with open_store(path) as store:
        if events:
            await store.append("r1", [ev(i=i) for i in range(events)], 0)


# --- eight processes, one fresh file --------------------------------------------------------


def test_eight_processes_opening_the_same_fresh_files_all_succeed(tmp_path: Path) -> None:
    import _open_race_worker  # noqa: PLC0415 - spawned children import it by this name

    processes, rounds = 8, 30
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    barrier = ctx.Barrier(processes, timeout=120)
    workers = [
        ctx.Process(
            target=_open_race_worker.open_fresh_files, args=(str(tmp_path), rounds, barrier, out)
        )
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    failures = [f for _ in workers for f in out.get(timeout=300)]
    for w in workers:
        w.join(timeout=60)
    assert failures == [], f"{len(failures)} of {processes * rounds} opens failed: {failures[:3]}"
    assert all(w.exitcode == 0 for w in workers)

    async def check_all() -> None:
        for i in range(rounds):
            async with open_store(tmp_path / f"fresh-{i}.db", read_only=True) as store:
                assert await store.runs() == []

    asyncio.run(check_all())


# --- a read never creates a store ----------------------------------------------------------


@EXISTING_ONLY
async def test_missing_file_is_reported_and_not_created(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(StoreNotFoundError, match="the file does not exist") as info:
        await open_store(path, **options)
    assert info.value.location == str(path)
    assert str(path) in str(info.value)
    assert not path.exists()


@EXISTING_ONLY
async def test_zero_byte_file_is_not_a_store_and_stays_empty(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(StoreNotFoundError, match=r"the file is empty \(zero bytes\)"):
        await open_store(path, **options)
    assert path.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["empty.db"]  # noqa: ASYNC240 - a test check


@EXISTING_ONLY
async def test_blank_sqlite_database_is_not_a_store_for_an_existing_only_open(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    path = tmp_path / "blank.db"
    tamper(path, "PRAGMA user_version = 0", "VACUUM")  # a valid, empty SQLite file
    before = files_of(tmp_path)
    with pytest.raises(StoreNotFoundError, match="blank SQLite database, not yet a store"):
        await open_store(path, **options)
    assert files_of(tmp_path) == before


async def test_newer_schema_is_refused_read_only_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await make_store_file(path, events=2)
    tamper(path, "PRAGMA user_version = 5")
    before = files_of(tmp_path)
    with pytest.raises(SchemaVersionError) as info:
        await open_store(path, read_only=True)
    assert (info.value.found, info.value.supported) == (5, 4)
    assert "Upgrade ledgerflow" in str(info.value)
    after = files_of(tmp_path)
    assert after["runs.db"] == before["runs.db"]
    # In a writable folder SQLite's mode=ro may leave its (empty) -wal index
    # files beside a WAL store; no byte of the store itself changes.
    assert (tmp_path / "runs.db-wal").stat().st_size == 0


# --- read-only audit in a folder the user cannot write -------------------------------------


def run_as_nobody(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run ``work`` in a forked child that dropped to uid/gid 65534; return its JSON result.

    Forked, not exec'd: the interpreter lives under /root, which uid 65534
    cannot enter, so the child keeps the modules this process imported.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_end)
            signal.alarm(60)  # bounded: a hung child dies
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            payload: dict[str, Any] = {"ok": asyncio.run(work())}
        except BaseException as exc:  # the test reports the child's error
            payload = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write_end, json.dumps(payload).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    result = json.loads(data)
    assert "error" not in result, result["error"]
    return result["ok"]


@pytest.fixture
def locked_folder() -> Iterator[Path]:
    """A folder outside pytest's 0700 tmp tree (uid 65534 must reach it); chmod'ed by the test."""
    folder = Path(tempfile.mkdtemp(prefix="ledgerflow-ro-"))
    os.chmod(folder, 0o755)
    yield folder
    os.chmod(folder, 0o755)
    shutil.rmtree(folder)


async def _audit(path: str) -> dict[str, Any]:
    refused = ""
    try:
        await open_store(path)  # a writable open: must refuse clearly, and write nothing
    except Exception as exc:  # the message is the assertion
        refused = f"{type(exc).__name__}: {exc}"
    async with open_store(path, read_only=True) as store:
        assert isinstance(store, SQLiteEventStore)
        envs = await store.read_all("r1")
        return {
            "refused": refused,
            "seqs": [e.seq for e in envs],
            "streamed": [e.seq async for e in store.read("r1")],
            "chain_ok": check_chain("r1", envs) is None,
            "runs": [r.run_id for r in await store.runs()],
            "immutable": store.immutable,
        }


def test_read_only_audit_of_a_cleanly_closed_store_in_an_unwritable_folder(
    locked_folder: Path,
) -> None:
    path = locked_folder / "runs.db"
    asyncio.run(make_store_file(path, events=3))
    assert sorted(p.name for p in locked_folder.iterdir()) == ["runs.db"]  # no -wal, no -shm
    os.chmod(path, 0o444)
    os.chmod(locked_folder, 0o555)
    before = files_of(locked_folder)
    seen = run_as_nobody(lambda: _audit(str(path)))
    assert seen["seqs"] == seen["streamed"] == [1, 2, 3]
    assert seen["chain_ok"]
    assert seen["runs"] == ["r1"]
    # mode=ro cannot create the -shm there (SQLITE_READONLY_DIRECTORY), so the
    # store falls back to immutable=1: safe, as no -wal file holds events.
    assert seen["immutable"] is True
    assert "StoreOpenError" in seen["refused"]
    assert "open it with read_only=True" in seen["refused"]
    assert files_of(locked_folder) == before


_LIVE_WRITER = """
import sys, sqlite3
from ledgerflow.eventstore.appending import check_append
from ledgerflow.eventstore.core import Batch
from ledgerflow.eventstore.envelope import format_at, NewEvent
from ledgerflow.eventstore.sqlite_rows import append_tx
writer = sqlite3.connect(sys.argv[1], isolation_level=None)
writer.execute("PRAGMA wal_autocheckpoint = 0")
items, at = check_append("r1", [NewEvent("Late", b"{}")], 2, None, max_event_bytes=1 << 20)
append_tx(writer, Batch("r1", items, 2, at, format_at(at), None, None))
print("ready", flush=True)
sys.stdin.readline()
writer.close()
"""


def test_read_only_audit_sees_events_still_in_a_live_writers_wal(locked_folder: Path) -> None:
    path = locked_folder / "runs.db"
    asyncio.run(make_store_file(path, events=2))
    # A live writer in another process (a connection must not cross fork())
    # whose last commit is only in the -wal file.
    writer = subprocess.Popen(
        [sys.executable, "-c", _LIVE_WRITER, str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        assert (locked_folder / "runs.db-wal").stat().st_size > 0
        os.chmod(path, 0o444)
        os.chmod(locked_folder, 0o555)
        before = files_of(locked_folder)
        seen = run_as_nobody(lambda: _audit(str(path)))
        assert files_of(locked_folder) == before
    finally:
        writer.communicate("done\n", timeout=60)
    assert seen["seqs"] == [1, 2, 3]  # immutable=1 would have missed seq 3
    assert seen["chain_ok"]
    assert seen["immutable"] is False
    assert "open it with read_only=True" in seen["refused"]


# --- rows edited into something that is not an envelope -----------------------------------


@pytest.mark.parametrize(
    ("statement", "seq", "needle"),
    [
        ("UPDATE events SET at = 'yesterday' WHERE seq = 2", 2, "is not ISO-8601"),
        ("UPDATE events SET at = '2024-01-01T00:00:00' WHERE seq = 2", 2, "has no timezone"),
        ("UPDATE events SET type = x'4142' WHERE seq = 3", 3, "the wrong types"),
        ("UPDATE events SET hash = x'00ff' WHERE seq = 3", 3, "the wrong types"),
        ("UPDATE events SET type = CAST(x'ff41' AS TEXT) WHERE seq = 4", 4, "type is not UTF-8"),
    ],
    ids=["garbage-time", "naive-time", "blob-type", "blob-hash", "invalid-utf8-type"],
)
async def test_a_row_that_cannot_be_read_names_its_run_and_seq(
    tmp_path: Path, statement: str, seq: int, needle: str
) -> None:
    path = tmp_path / "runs.db"
    await make_store_file(path, events=5)
    tamper(path, statement)
    async with open_store(path, read_only=True) as store:
        with pytest.raises(EventUnreadableError, match=needle) as info:
            await store.read_all("r1")
        assert (info.value.run_id, info.value.seq) == ("r1", seq)
        assert f"event seq {seq} of run 'r1'" in str(info.value)
        with pytest.raises(EventUnreadableError):
            [e async for e in store.read("r1")]
        assert [e.seq for e in await store.read_all("r1", until=seq - 1)] == list(range(1, seq))


# --- a copy made with .dump -----------------------------------------------------------------


def dump_copy(source: Path, target: Path) -> None:
    """Copy a database as ``sqlite3 source .dump | sqlite3 target`` does: rows, no header marks."""
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        dst.executescript("\n".join(src.iterdump()))
    finally:
        src.close()
        dst.close()


@pytest.mark.parametrize("options", [{}, {"read_only": True}], ids=["writable", "ro"])
async def test_a_dump_copy_is_recognised_refused_untouched_and_the_fix_works(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    await make_store_file(tmp_path / "orig.db", events=3)
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    copy = copy_dir / "copy.db"
    dump_copy(tmp_path / "orig.db", copy)
    before = files_of(copy_dir)
    with pytest.raises(NotAStoreError) as info:
        await open_store(copy, **options)
    message = str(info.value)
    assert "holds ledgerflow's tables" in message
    assert "another application" not in message
    assert files_of(copy_dir) == before
    fix = message.split(f"sqlite3 {copy} '", 1)[1].split("'", 1)[0]
    assert fix == "PRAGMA application_id = 1380729927; PRAGMA user_version = 4;"
    tamper(copy, *fix.split(";")[:2])
    async with open_store(copy, read_only=True) as store:
        assert check_chain("r1", await store.read_all("r1")) is None
        assert await store.last_seq("r1") == 3
