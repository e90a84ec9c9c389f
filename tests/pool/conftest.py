"""Fixtures of the pool tests: a fresh PostgreSQL schema per test, and worker processes
that never outlive their test.

PostgreSQL tests run only when ``LEDGERFLOW_TEST_PG_DSN`` names a database the
tests may create schemas in (``.ci/run`` sets it), e.g.
``postgresql://postgres@127.0.0.1:5432/test``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from pool_harness import NEEDS_PG, PG_DSN, PgPlace, WorkerProcess, fresh_pg_place


@pytest.fixture
async def pg() -> AsyncIterator[PgPlace]:
    """Fresh schemas (store and sink) on ``LEDGERFLOW_TEST_PG_DSN``, dropped after the test."""
    if not PG_DSN:
        pytest.skip(NEEDS_PG)
    async with fresh_pg_place() as place:
        yield place


@pytest.fixture
def spawned() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test started (it appends them); any still alive are killed after."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()
