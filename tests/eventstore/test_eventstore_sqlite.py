"""What only the SQLite backend promises: the file, its pragmas, tampering, processes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from eventstore_helpers import ev

from ledgerflow.eventstore import (
    NotAStoreError,
    SchemaVersionError,
    SQLiteEventStore,
    StoreBusyError,
    StoreOpenError,
    StoreUrlError,
    open_store,
)
from ledgerflow.eventstore.opening import parse_store_url
from ledgerflow.eventstore.schema import APPLICATION_ID, SCHEMA_VERSION
from ledgerflow.eventstore.sqlite import _one_hop


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def make_store_file(path: Path, events: int = 0) -> None:
    async with open_store(path) as store:
        if events:
            await store.append("r1", [ev(i=i) for i in range(events)], 0)


def tamper(path: Path, *statements: str) -> None:
    with sqlite3.connect(path, isolation_level=None) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


async def test_new_file_gets_ledgerflow_application_id_schema_version_and_wal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "runs.db"
    await make_store_file(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"events", "runs", "leases"} <= tables
    conn.close()


async def test_empty_existing_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    async with open_store(path) as store:
        await store.append("r1", [ev()], 0)
        assert await store.last_seq("r1") == 1


async def test_synchronous_full_is_default(tmp_path: Path) -> None:
    async with open_store(tmp_path / "runs.db") as store:
        assert isinstance(store, SQLiteEventStore)
        assert store._writer is not None
        async with store._writer.execute("PRAGMA synchronous") as cursor:
            assert await cursor.fetchone() == (2,)  # 2 = FULL
        async with store._writer.execute("PRAGMA journal_mode") as cursor:
            assert await cursor.fetchone() == ("wal",)


@pytest.mark.parametrize("how", ["keyword", "url"])
async def test_synchronous_normal_is_an_opt_in(tmp_path: Path, how: str) -> None:
    path = tmp_path / "runs.db"
    opener = (
        open_store(path, synchronous="normal")
        if how == "keyword"
        else open_store(f"sqlite:///{path}?synchronous=normal")
    )
    async with opener as store:
        assert isinstance(store, SQLiteEventStore)
        assert store._writer is not None
        async with store._writer.execute("PRAGMA synchronous") as cursor:
            assert await cursor.fetchone() == (1,)  # 1 = NORMAL


async def test_data_is_queryable_with_json_extract(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with open_store(path) as store:
        await store.append(
            "r1", [ev("TaskDispatched", task_id="price"), ev("TaskDispatched", task_id="book")], 0
        )
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT seq FROM events WHERE json_extract(data, '$.task_id') = 'book'"
    ).fetchall()
    conn.close()
    assert rows == [(2,)]


async def test_newer_schema_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await make_store_file(path, events=2)
    tamper(path, "PRAGMA user_version = 5", "PRAGMA journal_mode = DELETE")
    before = digest(path)
    with pytest.raises(SchemaVersionError) as info:
        await open_store(path)
    assert (info.value.found, info.value.supported) == (5, SCHEMA_VERSION)
    assert "newer ledgerflow (schema 5); this version reads schema 4. Upgrade" in str(info.value)
    assert digest(path) == before
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


async def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    tamper(path, "CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    before = digest(path)
    with pytest.raises(NotAStoreError, match="another application") as info:
        await open_store(path)
    assert info.value.path == str(path)
    assert digest(path) == before


async def test_non_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("shopping list: eggs, milk\n" * 20)
    before = digest(path)
    with pytest.raises(NotAStoreError, match="not a SQLite database file"):
        await open_store(path)
    assert digest(path) == before


async def test_missing_folder_is_reported_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreOpenError, match="folder exists"):
        await open_store(tmp_path / "no" / "such" / "runs.db")


async def test_writer_locked_past_busy_timeout_raises_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    await make_store_file(path, events=1)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        async with open_store(path, busy_timeout_ms=50) as store:
            with pytest.raises(StoreBusyError) as info:
                await store.append("r1", [ev()], 1)
            assert info.value.busy_timeout_ms == 50
            assert await store.last_seq("r1") == 1  # reads are not blocked by the writer
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


async def test_aiosqlite_still_offers_one_hop_execute(tmp_path: Path) -> None:
    # _one_hop relies on aiosqlite's private Connection._execute and ._conn;
    # if this fails after an aiosqlite upgrade, fix _one_hop in eventstore/sqlite.py.
    assert callable(getattr(aiosqlite.Connection, "_execute", None))
    assert isinstance(getattr(aiosqlite.Connection, "_conn", None), property)
    async with aiosqlite.connect(tmp_path / "x.db", isolation_level=None) as conn:

        def work(raw: sqlite3.Connection, n: int) -> tuple[int, bool]:
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("CREATE TABLE t (x)")
            raw.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(n)])
            raw.execute("COMMIT")
            return raw.execute("SELECT count(*) FROM t").fetchone()[0], raw.in_transaction

        assert await _one_hop(conn, work, 7) == (7, False)


@pytest.mark.parametrize(
    ("url", "location", "options"),
    [
        ("runs.db", "runs.db", {}),
        ("./x/runs.db", "./x/runs.db", {}),
        ("sqlite:///relative.db", "relative.db", {}),
        ("sqlite:////abs/path.db", "/abs/path.db", {}),
        ("SQLite:///a%20b.db", "a b.db", {}),
        ("sqlite:///x.db?synchronous=normal", "x.db", {"synchronous": "NORMAL"}),
        (
            "sqlite:///x.db?busy_timeout_ms=10&max_event_bytes=99",
            "x.db",
            {"busy_timeout_ms": 10, "max_event_bytes": 99},
        ),
        (Path("dir/runs.db"), "dir/runs.db", {}),
    ],
)
def test_open_store_url_forms(url: Any, location: str, options: dict[str, Any]) -> None:
    target = parse_store_url(url)
    assert (target.backend, target.location, target.options) == ("sqlite", location, options)


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("sqlite:///x.db?schema=a", "option schema applies only to PostgreSQL"),
        ("sqlite:///x.db?pool_size=2", "option pool_size applies only to PostgreSQL"),
        ("mysql://u@h/db", "scheme 'mysql' is unknown; use a file path such as 'runs.db'"),
        ("sqlite://host/x.db", "no host"),
        ("sqlite:///x.db?synchronous=off", "synchronous must be full or normal"),
        ("sqlite:///x.db?busy_timeout_ms=-1", "busy_timeout_ms must be an integer >= 0"),
        ("sqlite:///x.db?max_event_bytes=big", "max_event_bytes must be an integer >= 1"),
        ("sqlite:///x.db?cache=shared", "option 'cache' is unknown"),
        ("sqlite:///x.db?synchronus=normal", "'synchronus' is unknown; did you mean synchronous"),
        ("sqlite:///x.db?busy_timeout_ms=1&busy_timeout_ms=9", "busy_timeout_ms is given 2 times"),
        ("sqlite:///x.db?connect_timeout=3", "option connect_timeout applies only to PostgreSQL"),
        ("", "names no file"),
        ("sqlite:///", "names no file"),
        (":memory:", "in-memory"),
    ],
)
def test_open_store_refuses_unusable_urls_with_the_reason(url: str, needle: str) -> None:
    with pytest.raises(StoreUrlError, match=needle) as info:
        open_store(url)
    assert info.value.url == url
    assert str(info.value).startswith(f"Cannot open the store {url!r}: ")


def test_open_store_refuses_bad_keyword_options() -> None:
    with pytest.raises(StoreUrlError, match="synchronous must be full or normal"):
        open_store("runs.db", synchronous="EXTRA")


async def test_open_store_works_awaited_and_as_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    store = await open_store(path)
    await store.append("r1", [ev()], 0)
    await store.close()
    async with open_store(f"sqlite:///{path}", max_event_bytes=10) as again:
        assert again.max_event_bytes == 10
        assert await again.last_seq("r1") == 1
