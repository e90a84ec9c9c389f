"""Replay, audit and the CLI: rebuild any run's state, step through it, verify, fork, diff.

Example::

    from replay import verify_run
    report = await verify_run(store, run_id, workflow=wf)
    print("\\n".join(report.lines()))
"""

from replay.diff import RunDiff, TaskDifference, diff_runs
from replay.errors import ForkError, LogDecodeError, ReplayDivergenceError
from replay.fork import fork_run
from replay.steps import Step, walk
from replay.timeline import LogRow, decision_log, decode_log
from replay.verify import Check, Divergence, VerifyReport, check_determinism, verify_run

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
