"""One writer of the multi-process append race: ``python writers_race_child.py URL WORKER RUNS N``.

It opens the store at ``URL`` with the default options (what a user gets),
prints ``{"ready": WORKER}`` and waits for a line on stdin, so every writer
starts appending at once. Then it makes ``N`` appends of 1-3 events each,
cycling over the runs ``race-0`` .. ``race-{RUNS-1}``, with optimistic
concurrency: read ``last_seq``, append with ``expected_seq``, and on
:class:`ConcurrencyError` read again and retry. Every event's data names the
writer and the append (``{"worker": W, "n": k, "i": j}``), so the test can
tell who wrote each seq.

The last line on stdout is one JSON report: ``attempted``, ``conflicts``,
``appended`` (batches acknowledged), ``written`` (``[run, seq, hash]`` of
every acknowledged event) and ``errors`` (every other exception, by type
and message). A writer never lets an exception escape unreported.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import msgspec

from ledgerflow.eventstore import ConcurrencyError, NewEvent, open_store


async def race(url: str, worker: str, runs: int, appends: int) -> dict[str, Any]:
    """Make ``appends`` appends over ``runs`` runs; the report of what happened."""
    attempted = conflicts = appended = 0
    written: list[list[Any]] = []
    errors: list[str] = []
    async with open_store(url) as store:
        print(msgspec.json.encode({"ready": worker}).decode(), flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        offset = int(worker.removeprefix("w"))
        for n in range(appends):
            run_id = f"race-{(n + offset) % runs}"
            # 1-3 events per batch: a batch is atomic, so its seqs stay together.
            batch = [
                NewEvent("Raced", msgspec.json.encode({"worker": worker, "n": n, "i": i}))
                for i in range(1 + (n + offset) % 3)
            ]
            while True:
                attempted += 1
                try:
                    seq = await store.last_seq(run_id)
                    envs = await store.append(run_id, batch, expected_seq=seq)
                except ConcurrencyError:
                    conflicts += 1
                    continue
                except Exception as exc:  # reported, never hidden: the test asserts none
                    errors.append(f"{type(exc).__module__}.{type(exc).__name__}: {exc}")
                    break
                written.extend([run_id, env.seq, env.hash] for env in envs)
                appended += 1
                break
    return {"worker": worker, "attempted": attempted, "conflicts": conflicts,
            "appended": appended, "written": written, "errors": errors}


def main(argv: list[str]) -> int:
    """Run one writer and print its report as the last stdout line."""
    url, worker, runs, appends = argv[1], argv[2], int(argv[3]), int(argv[4])
    try:
        report = asyncio.run(race(url, worker, runs, appends))
    except BaseException as exc:  # opening or closing failed: still one report
        report = {"worker": worker, "attempted": 0, "conflicts": 0, "appended": 0, "written": [],
                  "errors": [f"{type(exc).__module__}.{type(exc).__name__}: {exc}"]}
    print(msgspec.json.encode(report).decode(), flush=True)
    return 0 if not report["errors"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
