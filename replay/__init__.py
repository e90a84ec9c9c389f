"""Replay, audit and the CLI: rebuild any run's state, step through it, verify, fork, diff.

Example::

    from ledgerflow.replay import verify_run
    report = await verify_run(store, run_id, workflow=wf)
    print("\\n".join(report.lines()))
"""

if not __name__.startswith("ledgerflow."):
    # Imported by its folder name (a script run from the repo root): a second
    # copy of the classes would record module paths, not ledgerflow's names.
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

from ledgerflow.replay.diff import RunDiff, TaskDifference, diff_runs
from ledgerflow.replay.errors import ForkError, LogDecodeError, ReplayDivergenceError
from ledgerflow.replay.fork import fork_run
from ledgerflow.replay.steps import Step, walk
from ledgerflow.replay.timeline import LogRow, decision_log, decode_log
from ledgerflow.replay.verify import Check, Divergence, VerifyReport, check_determinism, verify_run

__all__ = [
    "Check",
    "Divergence",
    "ForkError",
    "LogDecodeError",
    "LogRow",
    "ReplayDivergenceError",
    "RunDiff",
    "Step",
    "TaskDifference",
    "VerifyReport",
    "check_determinism",
    "decision_log",
    "decode_log",
    "diff_runs",
    "fork_run",
    "verify_run",
    "walk",
]
