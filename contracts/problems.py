"""What check_plan reports: one :class:`PlanProblem` per thing wrong with a plan."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["PlanProblem", "ProblemCode"]


class ProblemCode(enum.StrEnum):
    """The kinds of plan problem; each compares equal to its string value."""

    EMPTY_PLAN = "empty_plan"
    DEPENDENCY_CYCLE = "dependency_cycle"
    DUPLICATE_TASK = "duplicate_task"
    RESERVED_TASK_ID = "reserved_task_id"
    UNKNOWN_AGENT = "unknown_agent"
    UNKNOWN_TASK = "unknown_task"
    UNDECLARED_INPUT = "undeclared_input"
    BAD_REFERENCE = "bad_reference"
    UNKNOWN_REFERENCE_SOURCE = "unknown_reference_source"
    REFERENCE_NOT_NEEDED = "reference_not_needed"
    UNKNOWN_FIELD = "unknown_field"
    TYPE_MISMATCH = "type_mismatch"
    INVALID_LITERAL = "invalid_literal"
    MISSING_INPUT = "missing_input"


@dataclass(frozen=True)
class PlanProblem:
    """One reason a plan cannot run.

    ``task_id`` is ``None`` for plan-level problems (empty plan, cycles);
    ``field`` names the task's input field when the problem is about one.

    >>> PlanProblem(ProblemCode.EMPTY_PLAN, None, "The plan has no tasks.").code == "empty_plan"
    True
    """

    code: ProblemCode
    task_id: str | None
    message: str
    field: str | None = None
