"""Policies: how often to retry, how long to back off, how much a run may spend.

Policies are plain frozen data plus pure functions, so a decision made under
them replays identically: backoff jitter is derived from the run id, task id
and attempt, never from a random generator.

Example::

    >>> p = RetryPolicy(max_attempts=3, backoff_s=0.5)
    >>> p.delay("run-1", "price", attempt=1) == p.delay("run-1", "price", attempt=1)
    True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledgerflow.machines.errors import PermanentError, WorkflowDefinitionError
from ledgerflow.machines.stable_names import check_stable_name

__all__ = ["Budget", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a task's failed attempts are retried.

    ``max_attempts`` counts every attempt, the first one included. The delay
    before attempt ``n + 1`` is ``backoff_s * multiplier ** (n - 1)``, capped
    at ``max_backoff_s``, reduced by up to ``jitter`` (a fraction) derived
    from the run, task and attempt. An exception is permanent (escalated at
    once) if it is one of ``permanent``, otherwise transient if it is one of
    ``transient``; a timeout is always transient. Classes are matched by
    their stable names (:mod:`ledgerflow.machines.stable_names`), the names
    the log records, so a policy classifies a failure recorded before its
    class moved to another module.

    Example::

        RetryPolicy(max_attempts=5, backoff_s=1.0, permanent=(PermanentError, KeyError))
    """

    max_attempts: int = 3
    backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    jitter: float = 0.1
    transient: Sequence[type[BaseException]] = (Exception,)
    permanent: Sequence[type[BaseException]] = (PermanentError,)
    retry_low_confidence: bool = False
    _permanent_names: frozenset[str] = field(init=False, repr=False, compare=False)
    _transient_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WorkflowDefinitionError(
                f"RetryPolicy.max_attempts must be at least 1 (got {self.max_attempts}); "
                "it counts the first attempt too."
            )
        if self.backoff_s < 0 or self.multiplier < 1 or not 0 <= self.jitter <= 1:
            raise WorkflowDefinitionError(
                "RetryPolicy needs backoff_s >= 0, multiplier >= 1 and 0 <= jitter <= 1 "
                f"(got backoff_s={self.backoff_s}, multiplier={self.multiplier}, "
                f"jitter={self.jitter})."
            )
        object.__setattr__(self, "_permanent_names", frozenset(
            check_stable_name(c) for c in self.permanent))
        object.__setattr__(self, "_transient_names", frozenset(
            check_stable_name(c) for c in self.transient))

    def is_transient(self, error_types: Sequence[str], *, timed_out: bool = False) -> bool:
        """Whether an error (by its recorded stable class names) is worth retrying.

        Example::

            >>> RetryPolicy().is_transient(["ledgerflow.PermanentError", "builtins.Exception"])
            False
        """
        if timed_out:
            return True
        if any(name in self._permanent_names for name in error_types):
            return False
        return any(name in self._transient_names for name in error_types)

    def delay(self, run_id: str, task_id: str, *, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` before the next one."""
        base = min(self.max_backoff_s, self.backoff_s * self.multiplier ** max(0, attempt - 1))
        digest = hashlib.sha256(f"{run_id}\x1f{task_id}\x1f{attempt}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64
        return round(base * (1.0 - self.jitter * fraction), 6)


@dataclass(frozen=True, slots=True)
class Budget:
    """What one run may spend before it stops dispatching and escalates.

    ``max_retries`` bounds retries across all tasks of the run (the guard
    against a retry storm); ``max_cost`` bounds the cost agents report with
    ``ctx.record_usage``; ``deadline_s`` bounds the run's wall-clock time from
    its start. ``None`` means no limit.

    Example::

        Budget(max_retries=10, max_cost=2.50, deadline_s=600)
    """

    max_retries: int | None = 20
    max_cost: float | None = None
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_retries", "max_cost", "deadline_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise WorkflowDefinitionError(
                    f"Budget.{name} must be zero or more, or None for no limit (got {value})."
                )
