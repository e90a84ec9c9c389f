"""The worker pool benchmark (issue 10): runs/s and tasks/s with 1, 2 and 4 worker processes.

Usage (from the repository root)::

    python -m benchmarks.pool            # 3 rounds, N = 200 no-op / 100 sleeping runs (~4-5 min)
    python -m benchmarks.pool --quick    # 1 round, N = 40 / 20 (~1 min)
    python -m benchmarks.pool --only ledgerflow-sqlite --workers 1,2

A run is a planner and K = 4 independent tasks; N runs are submitted up
front; W worker processes then drain the queue, timed from "go" (every
worker ready) to the last run's terminal time. Systems: ledgerflow on
PostgreSQL, ledgerflow on one SQLite file, DBOS queues on the same
PostgreSQL server (skipped when ``dbos`` is not installed; PostgreSQL rows
are skipped when the server does not answer). Every measurement runs in a
fresh subprocess (``benchmarks.pool_measure``) on a fresh schema or file,
interleaved round by round. Prints a markdown table of medians (min-max) and
writes ``benchmarks/results/pool.md`` (committed) and ``pool.json`` (every
run; git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.pool_measure import PG_DSN, SYSTEMS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DASH = "\u2013"
LABELS = {"ledgerflow-pg": "ledgerflow, PostgreSQL",
          "ledgerflow-sqlite": "ledgerflow, one SQLite file",
          "ledgerflow-pg-local": "ledgerflow, PostgreSQL, --no-spread",
          "ledgerflow-sqlite-local": "ledgerflow, one SQLite file, --no-spread",
          "dbos-pg": "DBOS queues, PostgreSQL"}


def measure(system: str, workers: int, workload: str, n: int, k: int, task_concurrency: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a fresh subprocess; its JSON, or ``{"error": ...}``."""
    cmd = [sys.executable, "-m", "benchmarks.pool_measure", "--system", system,
           "--workers", str(workers), "--workload", workload, "--n", str(n), "--k", str(k),
           "--concurrency", str(args.concurrency), "--dbos-poll", str(args.dbos_poll),
           "--task-concurrency", str(task_concurrency)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["no output"]}
    out: dict[str, Any] = json.loads(lines[-1])
    return out


async def _pg_version() -> str | None:
    import asyncpg

    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SHOW server_version")).split()[0]
    finally:
        await conn.close()


def _median_text(values: list[float]) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:,.0f}"
    return f"{med:,.0f} ({min(values):,.0f}{DASH}{max(values):,.0f})"


def table(runs: dict[tuple[str, str, int], list[dict[str, Any]]]) -> str:
    """The markdown table: one row per system, workload and worker count."""
    rows = ["| system | workload | workers | runs/s | tasks/s | worker CPU ms/run "
            "| runs per worker (median run) | tasks per worker |",
            "|---|---|---|---|---|---|---|---|"]
    for (system, workload, workers), results in runs.items():
        good = [r for r in results if "error" not in r]
        if not good:
            error = " ".join(results[0]["error"]).replace("|", "/")
            rows.append(f"| {LABELS[system]} | {workload} | {workers} | failed: {error} "
                        "| | | | |")
            continue
        by_speed = sorted(good, key=lambda r: r["runs_per_s"])
        middle = by_speed[len(by_speed) // 2]
        rows.append(
            f"| {LABELS[system]} | {workload} | {workers} "
            f"| {_median_text([r['runs_per_s'] for r in good])} "
            f"| {_median_text([r['tasks_per_s'] for r in good])} "
            f"| {statistics.median(r['worker_cpu_s'] / r['n'] * 1000 for r in good):.1f} "
            f"| {' / '.join(str(x) for x in middle['per_worker'])} "
            f"| {' / '.join(str(x) for x in middle.get('tasks_per_worker', [])) or '-'} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 round, N = 40 / 20")
    parser.add_argument("--runs", type=int, default=None, help="rounds (default 3; quick 1)")
    parser.add_argument("--only", default=",".join(SYSTEMS), help="systems, comma-separated")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--k", type=int, default=4, help="independent tasks per run")
    parser.add_argument("--fanout", type=int, default=200, help="tasks of the one wide run")
    parser.add_argument("--concurrency", type=int, default=8, help="runs in flight per worker")
    parser.add_argument("--dbos-poll", type=float, default=0.05,
                        help="DBOS queue polling_interval_sec (DBOS's default is 1.0)")
    parser.add_argument("--no-write", action="store_true", help="do not write results/")
    args = parser.parse_args()
    rounds = args.runs or (1 if args.quick else 3)
    sizes = {"noop": 40, "sleep": 20} if args.quick else {"noop": 200, "sleep": 100}
    # scenario -> (workload, runs, tasks per run): many small runs, then one wide run.
    # The last item is a ledgerflow worker's task_concurrency: room for I/O-bound
    # agents, one at a time for CPU-bound ones (so the owner, its loop busy
    # computing, leaves the rest to the pool), as a user would set it.
    scenarios = {"noop": ("noop", sizes["noop"], args.k, 64),
                 "sleep": ("sleep", sizes["sleep"], args.k, 64),
                 "fan-out sleep": ("sleep", 1, args.fanout, 64),
                 "fan-out cpu": ("cpu", 1, args.fanout, 1)}
    systems = [s for s in args.only.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        raise SystemExit(f"Unknown system(s) {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(SYSTEMS)}.")
    pg = asyncio.run(_pg_version())
    if pg is None:
        print(f"PostgreSQL at {PG_DSN} does not answer: its rows are skipped.", file=sys.stderr)
        systems = [s for s in systems if not s.endswith("-pg")]
    if "dbos-pg" in systems and importlib.util.find_spec("dbos") is None:
        print("dbos is not installed (pip install -e '.[bench]'): its rows are skipped.",
              file=sys.stderr)
        systems.remove("dbos-pg")
    counts = [int(w) for w in args.workers.split(",")]
    keys = [(s, sc, w) for sc in scenarios for s in systems for w in counts]
    runs: dict[tuple[str, str, int], list[dict[str, Any]]] = {key: [] for key in keys}
    began = time.perf_counter()
    for rnd in range(rounds):
        for system, scenario, workers in keys:
            workload, n, k, task_concurrency = scenarios[scenario]
            r = measure(system, workers, workload, n, k, task_concurrency, args)
            runs[(system, scenario, workers)].append(r)
            shown = r.get("error") or f"{r['runs_per_s']:,.0f} runs/s"
            print(f"round {rnd + 1}/{rounds}: {system} {scenario} x{workers}: {shown}",
                  file=sys.stderr, flush=True)
    meta = (f"Run {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, PostgreSQL {pg or 'n/a'} (same machine), SQLite "
            f"{sqlite3.sqlite_version}; {rounds} round(s), median (min{DASH}max). "
            f"N = {sizes['noop']} no-op runs / {sizes['sleep']} sleeping runs (50 ms per task), "
            f"each a planner + K = {args.k} independent tasks; then one run of "
            f"{args.fanout} independent tasks (fan-out), sleeping 50 ms or computing "
            f"20 ms of CPU each; concurrency "
            f"{args.concurrency} runs per worker (ledgerflow `Worker(concurrency=)`, DBOS "
            f"`worker_concurrency`); DBOS queue polling_interval_sec = {args.dbos_poll:g}; "
            f"ledgerflow worker poll_s = 1 (LISTEN/NOTIFY on PostgreSQL), task_concurrency "
            f"64 attempts per worker (fan-out cpu: 1), a run's max_concurrency 64; "
            f"--no-spread: each "
            f"run's attempts run in the worker that drives it. Timed from every "
            f"worker process ready to the last run terminal. "
            f"Took {time.perf_counter() - began:.0f} s.")
    text = f"# Worker pool: runs/s and tasks/s\n\n{meta}\n\n{table(runs)}\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "pool.md").write_text(text)
        flat = [{"key": list(k), "runs": v} for k, v in runs.items()]
        (RESULTS / "pool.json").write_text(json.dumps(flat, indent=1))


if __name__ == "__main__":
    main()
