"""One measurement of the pool benchmark: N runs, W worker processes, one system.

``python -m benchmarks.pool_measure --system ledgerflow-pg --workers 2 --workload noop --n 200``
prints one JSON line. The steps:

1. a fresh store (a new PostgreSQL schema, or a new SQLite file) and N runs
   submitted up front (planner + K independent tasks each), not timed;
2. W worker processes started; each prepares (imports, opens its store or
   configures its DBOS app) and prints ``ready``;
3. once all are ready, "go" is written to each: the clock starts;
4. the clock stops at the last run's terminal time as the database recorded
   it (ledgerflow: the latest ``updated_at`` of the runs; DBOS: the latest
   ``completed_at`` of the workflows), and every run is checked to have
   completed;
5. the schema (or file) is dropped.

Systems: ``ledgerflow-pg``, ``ledgerflow-sqlite`` (one file, worker processes
on this machine) and ``dbos-pg`` (DBOS queues, a DBOS app per process).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._common import Result, fresh_db
from benchmarks.pool_workflows import PoolGoal, workflow_named
from ledgerflow.eventstore import open_store
from ledgerflow.machines import Orchestrator

ROOT = Path(__file__).resolve().parents[1]
#: The PostgreSQL server of the benchmark (override with BENCH_PG_DSN).
PG_DSN = os.environ.get("BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SYSTEMS = ("ledgerflow-pg", "ledgerflow-sqlite", "ledgerflow-pg-local", "ledgerflow-sqlite-local",
           "dbos-pg")
#: How long one measurement may take before it is called hung.
TIMEOUT_S = 180.0


def _spawn(module: str, *args: str) -> subprocess.Popen[str]:
    # stderr to a file, not a pipe: a chatty process must never block on a full pipe.
    err = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
    proc.stderr_file = err  # type: ignore[attr-defined]
    return proc


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _failed(proc: subprocess.Popen[str], what: str) -> RuntimeError:
    err = proc.stderr_file  # type: ignore[attr-defined]
    err.seek(0)
    return RuntimeError(f"{what} (exit {proc.returncode}):\n{err.read()[-3000:]}")


def _start(procs: list[subprocess.Popen[str]]) -> float:
    """Wait until every worker is ready, then tell them all to go; the start time."""
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("{"):
            proc.wait(timeout=30)
            raise _failed(proc, "A worker process failed before it was ready")
    started = time.time()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    return started


def _finish(proc: subprocess.Popen[str], say: str = "") -> dict[str, Any]:
    out, _ = proc.communicate(say, timeout=TIMEOUT_S)
    lines = _json_lines(out)
    if proc.returncode != 0 or not lines:
        raise _failed(proc, "A worker process failed")
    return lines[-1]


async def _submit(db: str, workload: str, n: int, k: int) -> float:
    wf = workflow_named(workload)
    t0 = time.perf_counter()
    async with open_store(db) as store:
        orch = Orchestrator(store)
        for _ in range(n):
            await orch.submit(wf, PoolGoal(k=k))
    return time.perf_counter() - t0


async def _ledgerflow_outcome(db: str, workload: str) -> tuple[int, int, float]:
    """(completed runs, events, the last run's terminal time) read back from the store."""
    label = workflow_named(workload).name
    async with open_store(db, create=False) as store:
        runs = [r for r in await store.runs(limit=-1) if r.label == label]
    completed = [r for r in runs if r.status == "completed"]
    last = max(r.updated_at.timestamp() for r in runs) if runs else 0.0
    return len(completed), sum(r.last_seq for r in runs), last


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def run_ledgerflow(backend: str, workers: int, workload: str, n: int, k: int,
                   concurrency: int, directory: str | None = None, *,
                   spread: bool = True, task_concurrency: int = 32) -> Result:
    """Ledgerflow on ``backend`` (``pg`` or ``sqlite``) with ``workers`` worker processes.

    ``spread``: the workers offer the attempts of the runs they drive to the
    whole pool (the default); without it each run's attempts run in its owner.
    """
    schema = f"poolbench_lf_{os.getpid()}_{time.time_ns() % 10**9}"
    db = f"{PG_DSN}?schema={schema}" if backend == "pg" else fresh_db(directory, "pool.db")
    try:
        submit_s = asyncio.run(_submit(db, workload, n, k))
        procs = [_spawn("benchmarks.pool_worker", "--db", db, "--workload", workload,
                        "--concurrency", str(concurrency),
                        "--spread" if spread else "--no-spread",
                        "--task-concurrency", str(task_concurrency)) for _ in range(workers)]
        started = _start(procs)
        stats = [_finish(proc) for proc in procs]
        completed, events, last = asyncio.run(_ledgerflow_outcome(db, workload))
    finally:
        if backend == "pg":
            asyncio.run(_drop_schema(schema))
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(db + suffix).unlink(missing_ok=True)
            if directory is None and not os.environ.get("BENCH_DIR"):
                Path(db).parent.rmdir()  # the fresh temp folder fresh_db made for this file
    return _result(f"ledgerflow-{backend}" + ("" if spread else "-local"), workload, workers,
                   n, k, concurrency,
                   last - started, completed=completed, events=events, submit_s=submit_s,
                   per_worker=[s["finished"] for s in stats],
                   tasks_per_worker=[s["tasks"] for s in stats],
                   worker_cpu_s=sum(s["cpu_s"] for s in stats),
                   lost=sum(s["lost"] for s in stats), failed=sum(s["failed"] for s in stats))


async def _dbos_outcome(schema: str, n: int) -> tuple[int, float]:
    """Wait until ``n`` workflows succeeded (or a timeout); (succeeded, last completion time)."""
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            row = await conn.fetchrow(
                "SELECT count(*) AS done, max(completed_at) AS last"
                f' FROM "{schema}".workflow_status'
                " WHERE name = 'pool_run' AND status = 'SUCCESS'")
            assert row is not None
            if row["done"] >= n or time.monotonic() > deadline:
                return int(row["done"]), (row["last"] or 0) / 1000
            await asyncio.sleep(0.02)  # the parent's own polling: 50/s, one cheap query
    finally:
        await conn.close()


def run_dbos(workers: int, workload: str, n: int, k: int, concurrency: int,
             poll_s: float) -> Result:
    """DBOS queues on the same PostgreSQL server, a DBOS app in each of ``workers`` processes."""
    schema = f"poolbench_dbos_{os.getpid()}_{time.time_ns() % 10**9}"
    common = ("--url", PG_DSN, "--schema", schema)
    try:
        t0 = time.perf_counter()
        setup = subprocess.run(
            [sys.executable, "-m", "benchmarks.pool_dbos", "setup", *common, "--n", str(n),
             "--k", str(k), "--workload", workload, "--concurrency", str(concurrency),
             "--poll", str(poll_s)], cwd=ROOT, capture_output=True, text=True, check=False,
            timeout=TIMEOUT_S)
        if setup.returncode != 0:
            raise RuntimeError(f"DBOS setup failed:\n{setup.stderr[-3000:]}")
        submit_s = time.perf_counter() - t0
        procs = [_spawn("benchmarks.pool_dbos", "worker", *common, "--executor-id", f"w{i}")
                 for i in range(workers)]
        started = _start(procs)
        completed, last = asyncio.run(_dbos_outcome(schema, n))
        stats = [_finish(proc, "stop\n") for proc in procs]
    finally:
        asyncio.run(_drop_schema(schema))
    return _result("dbos-pg", workload, workers, n, k, concurrency, last - started,
                   completed=completed, submit_s=submit_s, poll_s=poll_s,
                   per_worker=[s["executed"] for s in stats],
                   worker_cpu_s=sum(s["cpu_s"] for s in stats),
                   launch_s=max(s["launch_s"] for s in stats))


def _result(system: str, workload: str, workers: int, n: int, k: int, concurrency: int,
            seconds: float, **extra: Any) -> Result:
    return {"system": system, "workload": workload, "workers": workers, "n": n, "k": k,
            "concurrency": concurrency, "seconds": seconds,
            "runs_per_s": n / seconds if seconds > 0 else 0.0,
            "tasks_per_s": n * k / seconds if seconds > 0 else 0.0, **extra}


def run(system: str, workers: int, workload: str, n: int, *, k: int = 4, concurrency: int = 8,
        dbos_poll_s: float = 0.05, directory: str | None = None,
        task_concurrency: int = 32) -> Result:
    """One measurement of ``system`` (see :data:`SYSTEMS`); its result as a dict.

    Example::

        r = run("ledgerflow-sqlite", workers=2, workload="noop", n=20)
        r["completed"], r["runs_per_s"]
    """
    if system == "dbos-pg":
        return run_dbos(workers, workload, n, k, concurrency, dbos_poll_s)
    if system.startswith("ledgerflow-"):
        backend = system.removeprefix("ledgerflow-").removesuffix("-local")
        return run_ledgerflow(backend, workers, workload, n, k, concurrency, directory,
                              spread=not system.endswith("-local"),
                              task_concurrency=task_concurrency)
    raise SystemExit(f"Unknown system {system!r}; choose one of {', '.join(SYSTEMS)}.")


def main() -> None:
    parser = argparse.ArgumentParser(description="One measurement of the pool benchmark.")
    parser.add_argument("--system", choices=SYSTEMS, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--workload", choices=("noop", "sleep", "cpu"), default="noop")
    parser.add_argument("--n", type=int, default=200, help="runs submitted up front")
    parser.add_argument("--k", type=int, default=4, help="independent tasks per run")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight per worker")
    parser.add_argument("--dbos-poll", type=float, default=0.05,
                        help="DBOS queue polling_interval_sec")
    parser.add_argument("--dir", default=None, help="folder for the SQLite file")
    parser.add_argument("--task-concurrency", type=int, default=32,
                        help="a ledgerflow worker's task_concurrency")
    args = parser.parse_args()
    out = run(args.system, args.workers, args.workload, args.n, k=args.k,
              concurrency=args.concurrency, dbos_poll_s=args.dbos_poll, directory=args.dir,
              task_concurrency=args.task_concurrency)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
