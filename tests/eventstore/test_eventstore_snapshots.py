"""State snapshots in the store, on both backends: put, latest, list, prune; refused when unfit.

A snapshot is a cache beside the log: the store keeps its bytes, its seq and
the chain hash it was taken against, and nothing else about it. A store of
schema 3 (before the table) reads none and refuses to write one, typed.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventstore_helpers import PG_DSN, StoreFactory, drop_schemas, ev, needs_pg

from ledgerflow.eventstore import (
    SCHEMA_VERSION,
    EventStore,
    InvalidQueryError,
    StoreReadOnlyError,
    StoreUpgradeRequiredError,
    open_store,
)
from ledgerflow.eventstore.core import Batch, chain_batch
from ledgerflow.eventstore.envelope import GENESIS_HASH, format_at
from ledgerflow.eventstore.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    POSTGRES_APPLICATION,
    POSTGRES_MIGRATIONS,
)

HASH = "ab" * 32
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


async def _log(store: EventStore, run_id: str = "r1", n: int = 5) -> list[str]:
    envs = await store.append(run_id, [ev(n=i) for i in range(n)], 0, status="running")
    return [e.hash for e in envs]


async def test_latest_snapshot_is_the_highest_seq_at_or_below_the_asked_one(
    store: EventStore,
) -> None:
    hashes = await _log(store)
    assert await store.latest_snapshot("r1") is None
    await store.put_snapshot("r1", 2, hashes[1], 1, b"two")
    await store.put_snapshot("r1", 4, hashes[3], 1, b"four")
    latest = await store.latest_snapshot("r1")
    assert latest is not None
    assert (latest.run_id, latest.seq, latest.hash, latest.format, latest.state) == (
        "r1", 4, hashes[3], 1, b"four")
    assert latest.created_at.tzinfo is not None
    below = await store.latest_snapshot("r1", at_most_seq=3)
    assert below is not None
    assert below.seq == 2
    assert await store.latest_snapshot("r1", at_most_seq=1) is None
    assert await store.latest_snapshot("other") is None
    assert [s.seq for s in await store.snapshots("r1")] == [2, 4]


async def test_a_snapshot_put_again_at_its_seq_replaces_the_old_one(store: EventStore) -> None:
    hashes = await _log(store)
    await store.put_snapshot("r1", 3, HASH, 1, b"stale")
    await store.put_snapshot("r1", 3, hashes[2], 2, b"fresh")
    (snap,) = await store.snapshots("r1")
    assert (snap.hash, snap.format, snap.state) == (hashes[2], 2, b"fresh")


async def test_prune_keeps_the_latest_and_put_with_keep_prunes_in_the_same_write(
    store: EventStore,
) -> None:
    await _log(store, n=8)
    await _log(store, "r2", n=2)
    await store.put_snapshot("r2", 1, HASH, 1, b"other run")
    for seq in range(1, 6):
        await store.put_snapshot("r1", seq, HASH, 1, bytes([seq]))
    assert await store.prune_snapshots("r1", keep=2) == 3
    assert [s.seq for s in await store.snapshots("r1")] == [4, 5]
    await store.put_snapshot("r1", 7, HASH, 1, b"\x00seven", keep=2)
    assert [s.seq for s in await store.snapshots("r1")] == [5, 7]
    assert [s.seq for s in await store.snapshots("r2")] == [1]  # another run is untouched
    assert (await store.snapshots("r1"))[-1].state == b"\x00seven"  # bytes, NUL and all


@pytest.mark.parametrize(("args", "named"), [
    (("", 1, HASH, 1, b"x"), "run id"),
    (("r1", 0, HASH, 1, b"x"), "seq"),
    (("r1", True, HASH, 1, b"x"), "seq"),
    (("r1", 1, "not-a-hash", 1, b"x"), "hash"),
    (("r1", 1, HASH.upper(), 1, b"x"), "hash"),
    (("r1", 1, HASH, 0, b"x"), "format"),
    (("r1", 1, HASH, 1, b""), "state"),
    (("r1", 1, HASH, 1, "text"), "state"),
])
async def test_a_malformed_snapshot_is_refused_naming_the_argument(
    store: EventStore, args: tuple[object, ...], named: str
) -> None:
    with pytest.raises(InvalidQueryError, match=named):
        await store.put_snapshot(*args)  # type: ignore[arg-type]
    assert await store.snapshots("r1") == []


async def test_malformed_reads_and_prunes_are_refused(store: EventStore) -> None:
    with pytest.raises(InvalidQueryError, match="at_most_seq"):
        await store.latest_snapshot("r1", at_most_seq=0)
    with pytest.raises(InvalidQueryError, match="run id"):
        await store.snapshots("r1\x00")
    with pytest.raises(InvalidQueryError, match="keep"):
        await store.prune_snapshots("r1", keep=0)
    with pytest.raises(InvalidQueryError, match="keep"):
        await store.put_snapshot("r1", 1, HASH, 1, b"x", keep=-1)


async def test_a_read_only_store_reads_snapshots_and_refuses_to_write_them(
    store_factory: StoreFactory,
) -> None:
    writer = await store_factory("shared")
    hashes = await _log(writer)
    await writer.put_snapshot("r1", 5, hashes[4], 1, b"state")
    reader = await store_factory("shared", read_only=True)
    latest = await reader.latest_snapshot("r1")
    assert latest is not None
    assert latest.state == b"state"
    for write in (reader.put_snapshot("r1", 5, hashes[4], 1, b"x"),
                  reader.prune_snapshots("r1", keep=1)):
        with pytest.raises(StoreReadOnlyError):
            await write


# -- a store of schema 3: no snapshot table yet ------------------------------


def _v3_rows() -> list[tuple[str, int, str, str, str, str, str]]:
    batch = Batch("r1", [(e.type, e.data) for e in (ev(n=1), ev(n=2))], 0, AT, format_at(AT),
                  "running", "travel")
    return [(e.run_id, e.seq, e.type, format_at(AT), e.data.decode(), e.prev_hash, e.hash)
            for e in chain_batch(batch, 0, GENESIS_HASH)]


def _sqlite_v3(path: Path) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for migration in MIGRATIONS[:3]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 3")
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)", _v3_rows())
        at = format_at(AT)
        conn.execute("INSERT INTO runs VALUES ('r1', 'running', 'travel', ?, ?, 2)", (at, at))
    finally:
        conn.close()
    return str(path)


async def _postgres_v3(schema: str) -> str:
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    conn = await asyncpg.connect(PG_DSN)
    quoted = f'"{schema}"'
    try:
        await conn.execute(f"CREATE SCHEMA {quoted}")
        for migration in POSTGRES_MIGRATIONS[:3]:
            for statement in migration.statements:
                await conn.execute(statement.format(schema=quoted))
        await conn.execute(
            f"INSERT INTO {quoted}.meta (application, schema_version) VALUES ($1, 3)",
            POSTGRES_APPLICATION)
        for run_id, seq, type_, _, data, prev, hash_ in _v3_rows():
            await conn.execute(
                f"INSERT INTO {quoted}.events VALUES ($1, $2, $3, $4, $5::text::json, $6, $7)",
                run_id, seq, type_, AT, data, prev, hash_)
        await conn.execute(
            f"INSERT INTO {quoted}.runs VALUES ('r1', 'running', 'travel', $1, $1, 2)", AT)
    finally:
        await conn.close()
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
async def v3_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The url of a store at schema 3 (the task exchange; no snapshot table) holding run r1."""
    if request.param == "sqlite":
        yield _sqlite_v3(tmp_path / "v3.db")
        return
    schema = f"rlt_{uuid.uuid4().hex[:12]}_v3"
    try:
        yield await _postgres_v3(schema)
    finally:
        await drop_schemas(schema)


async def test_a_schema_3_store_reads_no_snapshots_and_refuses_to_write_one(
    v3_url: str,
) -> None:
    async with open_store(v3_url) as store:
        assert getattr(store, "schema_version", None) == 3
        assert len(await store.read_all("r1")) == 2
        assert await store.latest_snapshot("r1") is None
        assert await store.snapshots("r1") == []
        for write in (store.put_snapshot("r1", 2, HASH, 1, b"x"),
                      store.prune_snapshots("r1", keep=2)):
            with pytest.raises(StoreUpgradeRequiredError) as info:
                await write
            assert (info.value.version, info.value.current) == (3, SCHEMA_VERSION)
