"""Shared plumbing for the benchmark scripts: a fresh database file, a timer, the CLI.

Every script exposes ``run(n: int, db: str) -> dict`` and ends with
``cli(run)``, so it can be run alone::

    python -m benchmarks.rl_chain --n 200

which prints one JSON object (``compare.py`` runs each script in a fresh
subprocess and reads that line).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]
RunFn = Callable[[int, str], Result]

#: The pragmas of the raw baselines: what ledgerflow's store sets (WAL, FULL).
DURABLE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL")


def fresh_db(directory: str | None = None, name: str = "bench.db", *, keep: bool = False) -> str:
    """A path to a database file on disk that does not exist yet (unless ``keep``)."""
    base = directory or os.environ.get("BENCH_DIR") or tempfile.mkdtemp(prefix="rlbench-")
    Path(base).mkdir(parents=True, exist_ok=True)
    path = os.path.join(base, name)
    for suffix in ("", "-wal", "-shm", "-journal"):
        if not keep and os.path.exists(path + suffix):
            os.remove(path + suffix)
    return path


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def result(*, system: str, workload: str, n: int, steps: int, seconds: float,
           **extra: Any) -> Result:
    """The common shape of one measurement; ``steps/s`` is the headline figure."""
    return {
        "system": system,
        "workload": workload,
        "n": n,
        "steps": steps,
        "seconds": seconds,
        "steps_per_s": steps / seconds if seconds > 0 else float("inf"),
        "us_per_step": seconds / steps * 1e6 if steps else 0.0,
        **extra,
    }


def cli(run: RunFn, default_n: int = 200, *, keep: bool = False) -> None:
    """Parse ``--n`` and ``--dir``, run once, print the result as one JSON line."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "")
                                     .split("\n")[0])
    parser.add_argument("--n", type=int, default=default_n, help="number of tasks")
    parser.add_argument("--dir", default=None, help="folder for the database file")
    args = parser.parse_args()
    db = fresh_db(args.dir, keep=keep)
    out = run(args.n, db)
    out.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(out))
