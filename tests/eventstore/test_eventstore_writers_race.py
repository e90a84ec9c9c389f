"""Issue 12, scenario 3: many processes race appends on the same runs, nothing is lost.

8 writer processes on one SQLite file and 16 on PostgreSQL (a fresh schema),
all started at once on the same few runs, each appending with optimistic
concurrency (``expected_seq``, re-read and retry on :class:`ConcurrencyError`).
Afterwards every run's seqs are exactly 1..N, each seq was acknowledged to
exactly one writer and holds that writer's data, the hash chain verifies, the
``runs`` projection agrees, and no writer saw any other exception ("database
is locked" included: the writers open the store with the default options).
Each test prints its figures: appends attempted, conflicts retried, events
written.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from eventstore_helpers import PG_DSN, ev

from ledgerflow.eventstore import EventStore, check_chain, open_store

CHILD = Path(__file__).with_name("writers_race_child.py")
RUNS = 4


async def _race(url: str, writers: int, appends: int) -> list[dict[str, Any]]:
    """Start ``writers`` child processes, release them together, collect their reports."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), url, f"w{i}", str(RUNS), str(appends),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(writers)
    ]
    try:
        for proc in procs:  # every writer has opened the store before any appends
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert b'"ready"' in line, line
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        outputs = [await asyncio.wait_for(proc.communicate(), 120) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        lines = out.decode().strip().splitlines()
        assert lines, f"a writer printed no report (exit {proc.returncode}): {err.decode()}"
        reports.append(msgspec.json.decode(lines[-1]))
    return reports


async def _check(
    store: EventStore, reports: list[dict[str, Any]], appends: int, label: str
) -> None:
    errors = [e for r in reports for e in r["errors"]]
    assert errors == [], errors  # no "database is locked", nor anything else, reached a writer
    acknowledged: Counter[tuple[str, int]] = Counter()
    owner: dict[tuple[str, int], tuple[str, str]] = {}
    for report in reports:
        for run_id, seq, digest in report["written"]:
            acknowledged[(run_id, seq)] += 1
            owner[(run_id, seq)] = (report["worker"], digest)
    assert max(acknowledged.values()) == 1  # no seq was acknowledged to two writers
    total = 0
    for i in range(RUNS):
        run_id = f"race-{i}"
        envs = await store.read_all(run_id)
        assert [e.seq for e in envs] == list(range(1, len(envs) + 1))  # 1..N, no gap
        assert check_chain(run_id, envs) is None
        summary = await store.run(run_id)
        assert summary is not None
        assert summary.last_seq == len(envs)
        for env in envs:
            worker, digest = owner.pop((run_id, env.seq))  # acknowledged to someone
            assert msgspec.json.decode(env.data)["worker"] == worker  # ... who wrote it
            assert env.hash == digest
        total += len(envs)
    assert owner == {}  # nothing acknowledged is missing from the log
    attempted = sum(r["attempted"] for r in reports)
    conflicts = sum(r["conflicts"] for r in reports)
    assert [r["appended"] for r in reports] == [appends] * len(reports)
    assert attempted == conflicts + appends * len(reports)  # every retry was a conflict
    print(f"\n{label}: {len(reports)} writers, {attempted} appends attempted, "
          f"{conflicts} conflicts retried, {total} events written over {RUNS} runs")


async def test_eight_processes_race_appends_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    async with open_store(path) as store:
        await store.append("setup", [ev()], 0)  # the store exists before the race
    started = time.perf_counter()
    reports = await _race(str(path), writers=8, appends=60)
    async with open_store(path) as store:
        await _check(store, reports, 60, f"SQLite ({time.perf_counter() - started:.1f}s)")


async def test_sixteen_processes_race_appends_on_postgresql(pg_schema: str) -> None:
    url = f"{PG_DSN}{'&' if '?' in PG_DSN else '?'}schema={pg_schema}"
    async with open_store(url) as store:
        await store.append("setup", [ev()], 0)
    started = time.perf_counter()
    reports = await _race(url, writers=16, appends=40)
    async with open_store(url) as store:
        await _check(store, reports, 40, f"PostgreSQL ({time.perf_counter() - started:.1f}s)")
