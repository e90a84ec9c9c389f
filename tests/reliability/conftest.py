"""Fixtures of the reliability tests (issue 12): fresh PostgreSQL schemas, child processes
that never outlive their test, and a small tmpfs for the I/O fault stories.

PostgreSQL tests run only when ``LEDGERFLOW_TEST_PG_DSN`` names a database the
tests may create schemas in (``.ci/run`` sets it), e.g.
``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from rel_harness import NEEDS_PG, PG_DSN, Child


@dataclass(frozen=True)
class PgPlace:
    """A store URL on a fresh PostgreSQL schema, and a second schema for the test's sink."""

    dsn: str
    schema: str
    url: str
    sink_schema: str


@pytest.fixture
async def pg() -> AsyncIterator[PgPlace]:
    """Fresh schema names (store and sink) on ``LEDGERFLOW_TEST_PG_DSN``, dropped after."""
    if not PG_DSN:
        pytest.skip(NEEDS_PG)
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    schema = f"rlt_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    yield PgPlace(PG_DSN, schema, f"{PG_DSN}{sep}schema={schema}", f"{schema}_sink")
    conn = await asyncpg.connect(PG_DSN)
    try:
        for name in (schema, f"{schema}_sink"):
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def spawned() -> Iterator[list[Child]]:
    """Child processes a test started (it appends them); any still alive are killed after."""
    started: list[Child] = []
    yield started
    for child in started:
        child.kill()
