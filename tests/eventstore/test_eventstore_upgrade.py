"""Explicit migrations: a store of schema 1 opens and reads as it is, refuses writes with the fix,
and ``upgrade_store`` takes it to the current schema keeping every event.

The schema-1 stores are built here with the version-1 migration itself (SQLite and PostgreSQL),
their events chained by the store's own chain loop.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventstore_helpers import PG_DSN, drop_schemas, ev, needs_pg

from ledgerflow.eventstore import (
    SCHEMA_VERSION,
    SchemaVersionError,
    StoreNotFoundError,
    StoreUpgradeRequiredError,
    TaskOffer,
    check_chain,
    open_store,
    upgrade_store,
)
from ledgerflow.eventstore.core import Batch, chain_batch
from ledgerflow.eventstore.envelope import GENESIS_HASH, Envelope, format_at
from ledgerflow.eventstore.schema import (
    APPLICATION_ID,
    MIGRATIONS,
    POSTGRES_APPLICATION,
    POSTGRES_MIGRATIONS,
)

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def _v1_events() -> list[Envelope]:
    items = [(e.type, e.data) for e in (ev("RunStarted", goal="x"), ev(n=1), ev(n=2))]
    batch = Batch("r1", items, 0, AT, format_at(AT), "running", "travel")
    return chain_batch(batch, 0, GENESIS_HASH)


def _sqlite_v1(path: Path, version: int = 1) -> str:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        for migration in MIGRATIONS[:version]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {version}")
        at = format_at(AT)
        for e in _v1_events():
            conn.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (e.run_id, e.seq, e.type, at, e.data.decode(), e.prev_hash, e.hash),
            )
        conn.execute("INSERT INTO runs VALUES ('r1', 'running', 'travel', ?, ?, 3)", (at, at))
        conn.execute(
            "INSERT INTO leases (run_id, owner, expires_at) VALUES ('r1', 'old-driver', 0)")
    finally:
        conn.close()
    return str(path)


async def _postgres_v1(schema: str, version: int = 1) -> str:
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    conn = await asyncpg.connect(PG_DSN)
    quoted = f'"{schema}"'
    try:
        await conn.execute(f"CREATE SCHEMA {quoted}")
        for migration in POSTGRES_MIGRATIONS[:version]:
            for statement in migration.statements:
                await conn.execute(statement.format(schema=quoted))
        await conn.execute(
            f"INSERT INTO {quoted}.meta (application, schema_version) VALUES ($1, $2)",
            POSTGRES_APPLICATION, version,
        )
        for e in _v1_events():
            await conn.execute(
                f"INSERT INTO {quoted}.events VALUES ($1, $2, $3, $4, $5::text::json, $6, $7)",
                e.run_id, e.seq, e.type, AT, e.data.decode(), e.prev_hash, e.hash,
            )
        await conn.execute(
            f"INSERT INTO {quoted}.runs VALUES ('r1', 'running', 'travel', $1, $1, 3)", AT)
        await conn.execute(
            f"INSERT INTO {quoted}.leases (run_id, owner, expires_at) "
            "VALUES ('r1', 'old-driver', 'epoch'::timestamptz)")
    finally:
        await conn.close()
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
async def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The url of a store at schema 1 holding run r1 (three events, a lapsed lease)."""
    if request.param == "sqlite":
        yield _sqlite_v1(tmp_path / "v1.db")
        return
    schema = f"rlt_{uuid.uuid4().hex[:12]}_v1"
    try:
        yield await _postgres_v1(schema)
    finally:
        await drop_schemas(schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_pg)])
async def v2_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The url of a store at schema 2 (leases with fences, workers; no task exchange)."""
    if request.param == "sqlite":
        yield _sqlite_v1(tmp_path / "v2.db", version=2)
        return
    schema = f"rlt_{uuid.uuid4().hex[:12]}_v2"
    try:
        yield await _postgres_v1(schema, version=2)
    finally:
        await drop_schemas(schema)


async def test_a_v2_store_reads_its_workers_but_refuses_the_task_exchange(v2_url: str) -> None:
    async with open_store(v2_url) as store:
        assert getattr(store, "schema_version", None) == 2
        assert check_chain("r1", await store.read_all("r1")) is None
        assert await store.workers() == []  # the registry exists at v2 and is read
        assert await store.task_exchange() == []
        assert await store.task_facts("r1") == []
        for write in (
            store.offer_tasks("r1", [TaskOffer("t", 1, "travel", "a")], seq=3, fence=None),
            store.claim_task("w1", 30, workflows=["travel"]),
            store.acquire_slot("k", 1, "h", 30),
            store.register_worker("w1", {}, 30),
        ):
            with pytest.raises(StoreUpgradeRequiredError) as info:
                await write
            assert (info.value.version, info.value.current) == (2, SCHEMA_VERSION)


async def test_upgrade_takes_a_v2_store_to_v3_with_the_task_exchange(v2_url: str) -> None:
    async with open_store(v2_url) as before:
        old = await before.read_all("r1")
    assert await upgrade_store(v2_url) == (2, SCHEMA_VERSION)
    assert await upgrade_store(v2_url) == (SCHEMA_VERSION, SCHEMA_VERSION)
    async with open_store(v2_url) as store:
        assert await store.read_all("r1") == old
        fence = await store.take_lease("r1", "new-driver", 30)
        assert fence == 1
        await store.offer_tasks("r1", [TaskOffer("t", 1, "travel", "a")], seq=3, fence=fence)
        claim = await store.claim_task("w1", 30, workflows=["travel"])
        assert claim is not None
        assert claim.token == 1
        fact = await store.post_task_fact(claim, "outcome", b"{}")
        await store.answer_task_facts("r1", {fact: True}, fence=fence)
        assert await store.task_fact_answer(fact, claim) is True
        assert await store.acquire_slot("k", 1, "h", 30)


async def test_old_store_reads_but_refuses_writes_naming_the_upgrade_command(
    v1_url: str,
) -> None:
    async with open_store(v1_url) as store:
        envs = await store.read_all("r1")
        assert check_chain("r1", envs) is None
        assert [r.run_id for r in await store.runs()] == ["r1"]
        assert await store.workers() == []  # no registry before schema 2
        with pytest.raises(StoreUpgradeRequiredError) as info:
            await store.append("r1", [ev()], 3)
        assert (info.value.version, info.value.current) == (1, SCHEMA_VERSION)
        assert f"run `ledgerflow db upgrade --db {info.value.location}`" in str(info.value)
        assert "v1" in info.value.location
        for write in (
            store.try_lease("r1", "w1", 30),
            store.claim_run("w1", 30, statuses=["running"]),
            store.register_worker("w1", {}, 30),
        ):
            with pytest.raises(StoreUpgradeRequiredError):
                await write
        assert await store.last_seq("r1") == 3
    async with open_store(v1_url, read_only=True) as reader:
        assert len(await reader.read_all("r1")) == 3


async def test_upgrade_keeps_every_event_and_makes_the_store_writable(v1_url: str) -> None:
    async with open_store(v1_url) as before:
        old = await before.read_all("r1")
    assert await upgrade_store(v1_url) == (1, SCHEMA_VERSION)
    assert await upgrade_store(v1_url) == (SCHEMA_VERSION, SCHEMA_VERSION)  # idempotent
    async with open_store(v1_url) as store:
        envs = await store.read_all("r1")
        assert envs == old
        assert check_chain("r1", envs) is None
        # The v1 lease row got fence 0; its next owner gets the next fence.
        assert await store.take_lease("r1", "new-driver", 30) == 1
        await store.append("r1", [ev()], 3, fence=1)
        await store.register_worker("new-driver", {"host": "h"}, 30)
        (worker,) = await store.workers()
        assert worker.runs == ("r1",)
        assert check_chain("r1", await store.read_all("r1")) is None


async def test_upgrade_of_the_store_object_in_hand_needs_a_new_open(v1_url: str) -> None:
    async with open_store(v1_url) as stale:
        await upgrade_store(v1_url)
        # The old object still believes schema 1 and keeps refusing: reopen after an upgrade.
        with pytest.raises(StoreUpgradeRequiredError):
            await stale.append("r1", [ev()], 3)


async def test_upgrade_refuses_a_missing_store_and_a_newer_one(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError):
        await upgrade_store(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()
    path = _sqlite_v1(tmp_path / "newer.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError):
        await upgrade_store(path)


async def test_a_new_store_is_created_at_the_current_schema(tmp_path: Path) -> None:
    async with open_store(tmp_path / "new.db") as store:
        await store.append("r1", [ev()], 0)
    assert await upgrade_store(tmp_path / "new.db") == (SCHEMA_VERSION, SCHEMA_VERSION)
