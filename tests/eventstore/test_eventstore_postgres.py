"""What only the PostgreSQL backend promises: its schema, tampering, processes, urls.

The database tests need ``LEDGERFLOW_TEST_PG_DSN`` (see conftest.py) and are
skipped without it; the url-parsing tests always run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest
from eventstore_helpers import PG_DSN, drop_schemas, ev, needs_pg

from ledgerflow.eventstore import (
    ConcurrencyError,
    EventStore,
    NewEvent,
    NotAStoreError,
    PostgresEventStore,
    SchemaVersionError,
    StoreBusyError,
    StoreNotFoundError,
    StoreOpenError,
    StoreUrlError,
    check_chain,
    open_store,
)
from ledgerflow.eventstore.opening import parse_store_url
from ledgerflow.eventstore.schema import POSTGRES_APPLICATION, SCHEMA_VERSION


def url(schema: str) -> str:
    return f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={schema}"


async def sql(schema: str | None, *statements: str) -> list[Any]:
    """Run plain SQL beside the store (search_path = the store's schema); return the last rows."""
    settings = {"search_path": f'"{schema}"'} if schema else {}
    conn = await asyncpg.connect(PG_DSN, server_settings=settings)
    try:
        rows: list[Any] = []
        for statement in statements:
            rows = await conn.fetch(statement)
        return rows
    finally:
        await conn.close()


async def snapshot(schema: str) -> list[Any]:
    """Everything a refused open must leave as it was: the schema's objects and meta."""
    objects = await sql(
        None,
        "SELECT c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n "
        f"ON n.oid = c.relnamespace WHERE n.nspname = '{schema}' ORDER BY 1",
    )
    return [tuple(r) for r in objects]


async def make_store(schema: str, events: int = 0) -> None:
    async with open_store(url(schema)) as store:
        if events:
            await store.append("r1", [ev(i=i) for i in range(events)], 0)


@pytest.fixture
async def pg_store(pg_schema: str) -> AsyncIterator[EventStore]:
    async with open_store(url(pg_schema)) as store:
        yield store


# --- urls (no database needed) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "location", "options"),
    [
        ("postgresql://u@h/db", "postgresql://u@h/db", {}),
        ("postgres://u:pw@h:5433/db", "postgres://u:pw@h:5433/db", {}),
        (
            "postgresql://u@h/db?schema=team_a&pool_size=8&max_event_bytes=99",
            "postgresql://u@h/db",
            {"schema": "team_a", "pool_size": 8, "max_event_bytes": 99},
        ),
        (
            "PostgreSQL://u@h/db?sslmode=require&schema=x&connect_timeout=5",
            "postgresql://u@h/db?sslmode=require",
            {"schema": "x", "connect_timeout": 5.0},
        ),
        (
            "postgresql://u@/db?host=/run/pg&port=5433&target_session_attrs=read-write"
            "&application_name=billing",
            "postgresql://u@/db?host=%2Frun%2Fpg&port=5433&target_session_attrs=read-write",
            {"application_name": "billing"},
        ),
        (
            "postgresql://u@h/db?synchronous=normal&busy_timeout_ms=10",
            "postgresql://u@h/db",
            {"synchronous": "NORMAL", "busy_timeout_ms": 10},
        ),
    ],
)
def test_postgres_url_forms(given: str, location: str, options: dict[str, Any]) -> None:
    target = parse_store_url(given)
    assert (target.backend, target.location, target.options) == ("postgres", location, options)


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("postgresql://u@h/db?schema=Team", "not a plain PostgreSQL name"),
        ("postgresql://u@h/db?schema=a;drop", "not a plain PostgreSQL name"),
        ("postgresql://u@h/db?schema=", "not a plain PostgreSQL name"),
        ("postgresql://u@h/db?schema=pg_x", "reserves"),
        ("postgresql://u@h/db?pool_size=0", "pool_size must be an integer >= 1"),
        ("postgres://u@h/db?synchronous=off", "synchronous must be full or normal"),
        ("postgres://u@h/db?connect_timeout=0", "connect_timeout must be a number of seconds"),
        ("postgres://u@h/db?schma=rvtest", "option 'schma' is unknown; did you mean schema\\?"),
        ("postgres://u@h/db?sslmod=require", "option 'sslmod' is unknown; did you mean sslmode"),
        ("postgres://u@h/db?search_path=x", "option 'search_path' is unknown"),
        ("postgres://u@h/db?schema=a&schema=x", "option schema is given 2 times \\('a', 'x'\\)"),
        ("postgres://u@h/db?sslmode=a&sslmode=b", "option sslmode is given 2 times"),
    ],
)
def test_postgres_url_refuses_bad_options(given: str, needle: str) -> None:
    with pytest.raises(StoreUrlError, match=needle) as info:
        open_store(given)
    assert info.value.url == given  # what the user typed, nothing added


def test_a_refused_postgres_url_is_shown_as_typed_without_its_password() -> None:
    given = "postgresql://app:s3cret@db/runs?schma=rvtest"
    with pytest.raises(StoreUrlError) as info:
        open_store(given)
    assert info.value.url == "postgresql://app@db/runs?schma=rvtest"
    assert "s3cret" not in str(info.value)
    assert "schema=ledgerflow" not in str(info.value)


def test_schema_and_pool_size_keywords_are_postgres_only() -> None:
    with pytest.raises(StoreUrlError, match="schema applies only to PostgreSQL"):
        open_store("runs.db", schema="x")
    with pytest.raises(StoreUrlError, match="not a plain PostgreSQL name"):
        open_store("postgresql://u@h/db", schema='x"; drop table y; --')
    target = open_store("postgresql://u@h/db?schema=a", schema="b", pool_size=2).target
    assert target.options == {"schema": "b", "pool_size": 2}


# --- the database -------------------------------------------------------------------------


@needs_pg
async def test_new_schema_gets_the_tables_and_the_marker(pg_schema: str) -> None:
    async with open_store(url(pg_schema)) as store:
        assert isinstance(store, PostgresEventStore)
        assert store.schema == pg_schema
        assert store.path.endswith(f"?schema={pg_schema}")
    assert {r[0] for r in await snapshot(pg_schema) if r[1] == "r"} == {
        "meta",
        "events",
        "runs",
        "leases",
        "workers",
        "task_offers",
        "task_facts",
        "task_starts",
        "flow_slots",
        "run_secrets",
        "run_snapshots",
        "fork_families",
        "effect_claims",
    }
    meta = await sql(pg_schema, "SELECT application, schema_version FROM meta")
    assert [tuple(r) for r in meta] == [(POSTGRES_APPLICATION, SCHEMA_VERSION)]
    types = await sql(
        None,
        "SELECT column_name, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{pg_schema}' AND table_name = 'events'",
    )
    assert dict(types)["data"] == "json"
    assert dict(types)["at"] == "timestamp with time zone"


@needs_pg
async def test_data_is_kept_byte_for_byte_and_queryable_as_json(pg_store: EventStore) -> None:
    odd = b'{"z": 1,  "a": {"k": "\\u00e9"}, "a2": 1.50}'  # key order, spacing, escapes
    await pg_store.append(
        "r1",
        [ev("TaskDispatched", task_id="price"), ev("TaskDispatched", task_id="book")],
        0,
    )
    (env,) = await pg_store.append("r1", [NewEvent("Odd", odd)], 2)
    assert env.data == odd
    assert (await pg_store.read_all("r1", after=2))[0].data == odd
    assert check_chain("r1", await pg_store.read_all("r1")) is None
    assert isinstance(pg_store, PostgresEventStore)
    rows = await sql(pg_store.schema, "SELECT seq FROM events WHERE data->>'task_id' = 'book'")
    assert [r[0] for r in rows] == [2]
    text = await sql(pg_store.schema, "SELECT data::text FROM events WHERE seq = 3")
    assert text[0][0].encode() == odd


@needs_pg
async def test_newer_schema_version_is_refused_and_left_untouched(pg_schema: str) -> None:
    await make_store(pg_schema, events=2)
    await sql(pg_schema, "UPDATE meta SET schema_version = 5")
    before = await snapshot(pg_schema)
    with pytest.raises(SchemaVersionError) as info:
        await open_store(url(pg_schema))
    assert (info.value.found, info.value.supported) == (5, SCHEMA_VERSION)
    assert "newer ledgerflow (schema 5); this version reads schema 4. Upgrade" in str(info.value)
    assert await snapshot(pg_schema) == before
    assert (await sql(pg_schema, "SELECT schema_version FROM meta"))[0][0] == 5
    assert (await sql(pg_schema, "SELECT count(*) FROM events"))[0][0] == 2


@needs_pg
@pytest.mark.parametrize(
    ("statements", "needle"),
    [
        (
            ["CREATE TABLE customers (id int PRIMARY KEY)", "CREATE TABLE events (id int)"],
            r"2 tables or views of another application \(customers, events\)",
        ),
        (
            ["CREATE TABLE meta (application text, schema_version int)"],
            "its meta table holds no marker",
        ),
        (
            [
                "CREATE TABLE meta (application text, schema_version int)",
                "INSERT INTO meta VALUES ('someone.else', 1)",
            ],
            "its meta table holds the marker 'someone.else'",
        ),
    ],
    ids=["foreign-tables", "meta-without-marker", "another-marker"],
)
async def test_foreign_schema_is_refused_and_left_untouched(
    pg_schema: str, statements: list[str], needle: str
) -> None:
    await sql(None, f'CREATE SCHEMA "{pg_schema}"')
    await sql(pg_schema, *statements)
    before = await snapshot(pg_schema)
    with pytest.raises(NotAStoreError, match=needle) as info:
        await open_store(url(pg_schema))
    assert f"PostgreSQL schema {pg_schema!r}" in str(info.value)
    assert "left untouched" in str(info.value)
    assert await snapshot(pg_schema) == before


@needs_pg
async def test_empty_existing_schema_is_initialised(pg_schema: str) -> None:
    await sql(None, f'CREATE SCHEMA "{pg_schema}"')
    async with open_store(url(pg_schema)) as store:
        await store.append("r1", [ev()], 0)
        assert await store.last_seq("r1") == 1


@needs_pg
async def test_many_stores_opening_a_new_schema_at_once_all_succeed(pg_schema: str) -> None:
    stores = await asyncio.gather(*(open_store(url(pg_schema)) for _ in range(8)))
    try:
        await stores[0].append("r1", [ev()], 0)
        assert [await s.last_seq("r1") for s in stores] == [1] * 8
    finally:
        for store in stores:
            await store.close()
    assert len(await sql(pg_schema, "SELECT * FROM meta")) == 1


@needs_pg
async def test_two_pools_racing_on_the_same_seq_exactly_one_wins_each_round(
    pg_schema: str,
) -> None:
    a = await open_store(url(pg_schema), pool_size=2)
    b = await open_store(url(pg_schema), pool_size=2)
    try:
        seq = 0
        for round_ in range(40):
            results = await asyncio.gather(
                a.append("r1", [ev("A", round=round_), ev("A", round=round_)], seq),
                b.append("r1", [ev("B", round=round_)], seq),
                return_exceptions=True,
            )
            winners = [r for r in results if isinstance(r, list)]
            losers = [r for r in results if isinstance(r, ConcurrencyError)]
            assert (len(winners), len(losers)) == (1, 1), results
            assert losers[0].expected_seq == seq
            seq = winners[0][-1].seq
        envs = await a.read_all("r1")
        assert check_chain("r1", envs) is None
        assert [e.seq for e in envs] == list(range(1, seq + 1))
        assert [msgspec.json.decode(e.data)["round"] for e in envs][-1] == 39
        summary = await b.run("r1")
        assert summary is not None
        assert summary.last_seq == seq
    finally:
        await a.close()
        await b.close()


@needs_pg
async def test_table_locked_past_busy_timeout_raises_store_busy(pg_schema: str) -> None:
    await make_store(pg_schema, events=1)
    blocker = await asyncpg.connect(PG_DSN)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute(f'LOCK TABLE "{pg_schema}".runs IN ACCESS EXCLUSIVE MODE')
        async with open_store(url(pg_schema), busy_timeout_ms=50) as store:
            with pytest.raises(StoreBusyError) as info:
                await store.append("r1", [ev()], 1)
            assert info.value.busy_timeout_ms == 50
            await tx.rollback()
            assert await store.last_seq("r1") == 1  # nothing of the refused append was kept
            await store.append("r1", [ev()], 1)
    finally:
        await blocker.close()


@needs_pg
@pytest.mark.parametrize(
    ("how", "expected"), [("default", "on"), ("url", "off"), ("keyword", "off")]
)
async def test_synchronous_normal_turns_synchronous_commit_off(
    pg_schema: str, how: str, expected: str
) -> None:
    opener: Any = {
        "default": lambda: open_store(url(pg_schema)),
        "url": lambda: open_store(url(pg_schema) + "&synchronous=normal"),
        "keyword": lambda: open_store(url(pg_schema), synchronous="normal"),
    }[how]
    async with opener() as store:
        assert isinstance(store, PostgresEventStore)
        pool: Any = store._pool
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == expected


@needs_pg
async def test_pool_size_and_max_event_bytes_from_the_url(pg_schema: str) -> None:
    async with open_store(url(pg_schema) + "&pool_size=2&max_event_bytes=64") as store:
        assert isinstance(store, PostgresEventStore)
        assert store.max_event_bytes == 64
        assert store._pool.get_max_size() == 2


@needs_pg
async def test_missing_database_is_reported_clearly() -> None:
    dsn = PG_DSN.rsplit("/", 1)[0] + "/ledgerflow_no_such_database"
    with pytest.raises(StoreOpenError, match="the database does not exist") as info:
        await open_store(dsn)
    assert "PostgreSQL server is running" in str(info.value)


async def test_unreachable_server_is_reported_clearly() -> None:
    with pytest.raises(StoreOpenError, match="cannot reach the server"):
        await open_store("postgresql://nobody:secret@127.0.0.1:1/db?connect_timeout=2")


async def test_password_is_not_shown_in_messages() -> None:
    with pytest.raises(StoreOpenError) as info:
        await open_store("postgresql://nobody:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)
    assert "'postgresql://nobody@127.0.0.1:1/db'" in str(info.value)
    with pytest.raises(StoreOpenError) as info:
        await open_store("postgresql://nobody:secret@127.0.0.1:1/db?connect_timeout=2", schema="b")
    assert "'postgresql://nobody@127.0.0.1:1/db?connect_timeout=2&schema=b'" in str(info.value)


@needs_pg
async def test_nul_in_run_id_is_refused_before_the_database(pg_store: EventStore) -> None:
    with pytest.raises(ValueError, match="NUL"):
        await pg_store.append("r\x001", [ev()], 0)
    assert await pg_store.runs() == []


@needs_pg
async def test_dropping_the_test_schema_leaves_nothing(pg_schema: str) -> None:
    await make_store(pg_schema, events=1)
    await drop_schemas(pg_schema)
    assert await snapshot(pg_schema) == []


@needs_pg
async def test_a_time_nudged_by_one_microsecond_breaks_the_hash(pg_store: EventStore) -> None:
    # timestamptz keeps microseconds, so even the smallest edit of `at` is caught.
    await pg_store.append("r1", [ev(i=i) for i in range(5)], 0)
    assert isinstance(pg_store, PostgresEventStore)
    await sql(pg_store.schema, "UPDATE events SET at = at + interval '1 microsecond' WHERE seq = 5")
    problem = check_chain("r1", await pg_store.read_all("r1"))
    assert problem is not None
    assert (problem.seq, problem.kind) == (5, "hash")


# --- a read never creates a schema; read-only sessions ----------------------------------


EXISTING_ONLY = pytest.mark.parametrize(
    "options", [{"create": False}, {"read_only": True}], ids=["existing", "ro"]
)


async def schema_exists(schema: str) -> bool:
    rows = await sql(None, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'")
    return bool(rows[0][0])


@needs_pg
@EXISTING_ONLY
async def test_mistyped_schema_is_reported_and_not_created(
    pg_schema: str, options: dict[str, Any]
) -> None:
    needle = f"the PostgreSQL schema '{pg_schema}' does not exist"
    with pytest.raises(StoreNotFoundError, match=needle):
        await open_store(url(pg_schema), **options)
    assert not await schema_exists(pg_schema)


@needs_pg
@EXISTING_ONLY
async def test_empty_schema_is_not_a_store_for_an_existing_only_open(
    pg_schema: str, options: dict[str, Any]
) -> None:
    await sql(None, f'CREATE SCHEMA "{pg_schema}"')
    with pytest.raises(StoreNotFoundError, match="is empty"):
        await open_store(url(pg_schema), **options)
    assert await snapshot(pg_schema) == []


@needs_pg
async def test_newer_schema_version_is_refused_read_only_too(pg_schema: str) -> None:
    await make_store(pg_schema, events=1)
    await sql(pg_schema, "UPDATE meta SET schema_version = 5")
    before = await snapshot(pg_schema)
    with pytest.raises(SchemaVersionError, match="newer ledgerflow"):
        await open_store(url(pg_schema), read_only=True)
    assert await snapshot(pg_schema) == before


@needs_pg
async def test_read_only_sessions_are_read_only_at_the_server(pg_schema: str) -> None:
    await make_store(pg_schema, events=1)
    async with open_store(url(pg_schema), read_only=True) as store:
        assert isinstance(store, PostgresEventStore)
        assert store.read_only
        async with store._pool.acquire() as conn:
            assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute(f'DELETE FROM "{pg_schema}".events')
        assert await store.last_seq("r1") == 1


@needs_pg
async def test_libpq_keys_and_application_name_in_the_url_reach_the_connection(
    pg_schema: str,
) -> None:
    given = f"{url(pg_schema)}&application_name=billing_{pg_schema}&sslmode=disable"
    async with open_store(given) as store:
        assert isinstance(store, PostgresEventStore)
        assert store.path == given  # the url as typed (it has no password to mask)
        rows = await sql(
            None,
            f"SELECT count(*) FROM pg_stat_activity WHERE application_name = 'billing_{pg_schema}'",
        )
        assert rows[0][0] >= 1


@needs_pg
@pytest.mark.parametrize("read_only", [False, True], ids=["writable", "read-only"])
async def test_a_marked_schema_with_a_dropped_table_is_named_incomplete_not_a_server_error(
    pg_schema: str, read_only: bool
) -> None:
    await make_store(pg_schema, events=2)
    await sql(pg_schema, "DROP TABLE runs", "DROP TABLE leases")
    before = await snapshot(pg_schema)
    needle = "is incomplete \\(missing tables leases, runs\\)"
    with pytest.raises(NotAStoreError, match=needle) as info:
        await open_store(url(pg_schema), read_only=read_only)
    assert f"The store in schema {pg_schema!r}" in str(info.value)
    assert f'DROP SCHEMA "{pg_schema}" CASCADE' in str(info.value)
    assert "check the server" not in str(info.value)
    assert await snapshot(pg_schema) == before
