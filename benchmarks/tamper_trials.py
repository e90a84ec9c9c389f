"""Tampering trials (issue 12, scenario 5): what finds thousands of random edits of real runs.

Builds the demo runs and a few generated ones in SQLite files, tampers with
copies of them (``tests/replay/tamper_trials.py`` says how: bit flips, edited
values, deleted, swapped and inserted rows, a truncated tail with the runs
row edited, each also with the chain recomputed) and prints the markdown
table of how many each check found, then what the stored-chain check that
guards every append costs beside the resume of a ~10,000-event run::

    python -m benchmarks.tamper_trials --trials 3300

The last line is one JSON object: ``{column: [found, trials], ...}`` and the
cost figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "replay"))

import tamper_trials

from ledgerflow.eventstore import open_store
from ledgerflow.eventstore.chain_keys import stored_chain_problem
from ledgerflow.machines import Orchestrator, load_run_state


async def chain_check_cost(folder: Path, tasks: int = 2000, rounds: int = 5) -> dict[str, Any]:
    """Best-of-``rounds`` times: the stored-chain check, the fold, a resume of the whole run.

    The run is one generated plan of ``tasks`` tasks (about 5 events a task),
    left waiting on its escalations so that resume drives it (it appends a
    RunResumed batch each time).
    """
    db = folder / "cost.db"
    async with open_store(db) as store:
        run = await Orchestrator(store).start(tamper_trials.gen,
                                              tamper_trials.GenGoal(tasks=tasks, seed=7))
        rid = run.run_id
        best: dict[str, float] = {}
        for _ in range(rounds):
            for name, step in (("chain_check", lambda: stored_chain_problem(store, rid)),
                               ("fold", lambda: load_run_state(store, rid)),
                               ("resume", lambda: Orchestrator(store).resume(
                                   rid, tamper_trials.gen))):
                started = time.perf_counter()
                await step()
                took = time.perf_counter() - started
                best[name] = min(best.get(name, took), took)
        events = await store.last_seq(rid)
    return {"events": events, "status": run.status,
            **{f"{k}_ms": round(v * 1000, 1) for k, v in best.items()},
            "chain_check_share_of_resume": round(best["chain_check"] / best["resume"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3300)
    parser.add_argument("--generated", type=int, default=6,
                        help="generated runs beside the three demo runs")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--dir", default=None, help="a folder for the SQLite files")
    parser.add_argument("--cost-tasks", type=int, default=0,
                        help="also time the stored-chain check on a run of this many tasks "
                             "(2000 makes ~10,000 events)")
    args = parser.parse_args()
    folder = Path(args.dir or tempfile.mkdtemp(prefix="tamper-"))
    started = time.perf_counter()
    cases = tamper_trials.build_cases(folder, generated=args.generated)
    tally = tamper_trials.run_trials(cases, folder, args.trials, seed=args.seed)
    took = time.perf_counter() - started
    print(f"{args.trials} trials on {len(cases)} runs ({', '.join(str(c.events) for c in cases)} "
          f"events) in {took:.1f}s; seed {args.seed}")
    print()
    print(tamper_trials.table(tally))
    print()
    print("columns: plain = verify (chain, transitions); workflow = verify --workflow; "
          "head = verify --head, anchored before the tampering and kept safe; "
          "head_rewritten = the attacker also rewrote that unkeyed anchor; keyed = the "
          "attacker also rewrote a keyed anchor, sealing it with a key of their own; "
          "refused = resume raised ChainBrokenError (appended nothing)")
    if tally.other_refusals:
        print("resume failed otherwise (no ChainBrokenError): "
              + ", ".join(f"{k} {v}" for k, v in tally.other_refusals.most_common()))
    if tally.crashes:
        print(f"untyped errors ({len(tally.crashes)}): " + "; ".join(tally.crashes[:5]))
    doc: dict[str, Any] = {c: list(tally.total(c)) for c in tamper_trials.COLUMNS}
    doc["crashes"] = len(tally.crashes)
    if args.cost_tasks:
        doc["cost"] = asyncio.run(chain_check_cost(folder, args.cost_tasks))
        print(f"cost: {doc['cost']}")
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
