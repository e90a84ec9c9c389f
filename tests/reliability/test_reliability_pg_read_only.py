"""Issue 12, scenario 2 on PostgreSQL: the server stops taking the store's writes mid-run.

The store belongs to a role of its own; mid-run (inside an agent call) its
INSERT, UPDATE and DELETE on the store's tables are revoked, as an operator
making a database read-only would: the append fails with the typed one-line
``StoreServerReadOnlyError`` (a ``StoreReadOnlyError``), nothing is falsely
acknowledged (a side channel records every acknowledged append), and once the
writes are granted back the run resumes to completed and every log verifies.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest
from rel_acks import AckingStore, check_acks
from rel_iofaults import IoGoal, io_wf, on_call

from ledgerflow.eventstore import EventStore, StoreReadOnlyError, open_store
from ledgerflow.machines import Orchestrator
from ledgerflow.replay import verify_run

PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
_WRITES = "INSERT, UPDATE, DELETE"


@pytest.fixture
async def own_role() -> AsyncIterator[tuple[str, str, Any]]:
    """A login role owning a fresh schema: (its store url, the grant SQL scope, admin conn)."""
    if not PG_DSN:
        pytest.skip("needs LEDGERFLOW_TEST_PG_DSN")
    import asyncpg  # noqa: PLC0415 - PostgreSQL tests only

    suffix = uuid.uuid4().hex[:10]
    role, schema = f"lf_ro_{suffix}", f"lfro_{suffix}"
    admin = await asyncpg.connect(PG_DSN)
    await admin.execute(f'CREATE ROLE "{role}" LOGIN')
    await admin.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{role}"')
    base, _, database = PG_DSN.rpartition("/")
    host = base.rpartition("@")[2]
    url = f"postgresql://{role}@{host}/{database.split('?')[0]}?schema={schema}"
    try:
        yield url, f'ALL TABLES IN SCHEMA "{schema}"', admin
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_postgres_refusing_writes_mid_run_fails_typed_and_resumes(
    own_role: tuple[str, str, Any], tmp_path: Path,
) -> None:
    url, tables, admin = own_role
    role = url.split("//", 1)[1].split("@", 1)[0]
    ack_dir = tmp_path / "acks"
    ack_dir.mkdir()
    async with open_store(url) as inner:
        store = cast(EventStore, AckingStore(inner, ack_dir / "acks.jsonl",
                                             effect_tasks=frozenset()))
        orch = Orchestrator(store)
        before = await orch.start(io_wf, IoGoal(pad="p" * 100, tasks=6), run_id="pg-before")
        assert before.status == "completed"

        async def revoke(run: str, task: str) -> None:
            if run == "pg-ro" and task == "t3":
                await admin.execute(f'REVOKE {_WRITES} ON {tables} FROM "{role}"')

        on_call.append(revoke)
        try:
            with pytest.raises(StoreReadOnlyError) as refused:
                await orch.start(io_wf, IoGoal(pad="p" * 100, tasks=6), run_id="pg-ro")
        finally:
            on_call.clear()
        message = str(refused.value)
        print(f"server refusing writes: {type(refused.value).__name__}: {message}")
        assert "\n" not in message
        assert "nothing was acknowledged" in message
        while_refused = await check_acks(inner, ack_dir)  # reads still work
        assert while_refused.problems == []

        await admin.execute(f'GRANT {_WRITES} ON {tables} TO "{role}"')
        resumed = await Orchestrator(store).resume("pg-ro", io_wf)
        assert resumed.status == "completed", resumed.reason
        after = await check_acks(inner, ack_dir)
        assert after.problems == []
        for run_id in ("pg-before", "pg-ro"):
            report = await verify_run(inner, run_id, workflow=io_wf)
            assert report.ok, report.lines()
    print(f"acknowledged events checked: {after.acknowledged_events}")
