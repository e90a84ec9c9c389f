"""Kill points: a child process SIGKILLs itself the n-th time it reaches an armed place.

A parent cannot aim a timer at "after the effect, before the agent returns":
that window is a few microseconds wide. So the child is armed instead, by
its environment: ``LEDGERFLOW_KILL_AT=CATEGORY:N`` makes the N-th call of
:func:`reach` with that category write the category to ``LEDGERFLOW_KILL_LOG``
(so the parent can count the points hit) and then ``kill -9`` its own
process: no ``finally``, no atexit, no flush of anything not yet written,
exactly what ``kill -9`` from outside does. ``mid_batch`` fires a moment
later instead (:func:`reach_soon`), from a timer thread, so it lands inside
the append in flight rather than before it.

Example::

    os.environ["LEDGERFLOW_KILL_AT"] = "effect_then_outcome:3"
    reach("effect_then_outcome")   # the third call never returns
"""

from __future__ import annotations

import os
import random
import signal
import threading

__all__ = ["CATEGORIES", "armed", "reach", "reach_soon"]

#: Where a kill can be aimed (the parent cycles through them); "random" is the
#: parent's own timer, aimed at nothing.
CATEGORIES = ("append_then_dispatch", "effect_then_outcome", "mid_batch", "in_step_effect",
              "in_step_plain", "random")

_category, _, _count = os.environ.get("LEDGERFLOW_KILL_AT", "").partition(":")
_left = int(_count) if _count else 0
_lock = threading.Lock()


def armed(category: str) -> bool:
    """Whether this process may still die at ``category`` (cheap: checked on hot paths)."""
    return _left > 0 and category == _category


def _due(category: str) -> bool:
    global _left  # noqa: PLW0603 - one countdown per process, by design
    with _lock:
        if _left <= 0 or category != _category:
            return False
        _left -= 1
        return _left == 0


def _die(category: str) -> None:
    log = os.environ.get("LEDGERFLOW_KILL_LOG")
    if log:
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{category} {os.getpid()}\n".encode())
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def reach(category: str) -> None:
    """Die here if this is the armed category's N-th call."""
    if _due(category):
        _die(category)


def reach_soon(category: str, *, within_s: float = 0.004) -> None:
    """Like :func:`reach`, but die from a timer a random moment (< ``within_s``) later."""
    if _due(category):
        timer = threading.Timer(random.uniform(0.0, within_s), _die, (category,))
        timer.daemon = True
        timer.start()
