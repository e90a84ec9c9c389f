"""Replay, audit and the CLI: rebuild any run's state, step through it, verify it.

Example::

    from replay import decision_log
    rows = decision_log(await store.read_all(run_id))
"""

from replay.errors import ForkError, LogDecodeError, ReplayDivergenceError
from replay.timeline import LogRow, decision_log, decode_log

__all__ = [
    "ForkError",
    "LogDecodeError",
    "LogRow",
    "ReplayDivergenceError",
    "decision_log",
    "decode_log",
]
