"""The plan a planner proposes: tasks, the agents that run them, and their inputs.

A plan is data, not code: it is recorded in the event log and checked by
:func:`ledgerflow.contracts.check_plan` before anything runs.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GOAL", "TASK_ID_PATTERN", "Plan", "Task"]

TASK_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*$"
"""What a task id looks like; the same shape a reference's source must have."""

GOAL = "goal"
"""The reference source naming the run's goal; no task may take this id."""


class Task(BaseModel):
    """One unit of work: run ``agent`` on ``inputs`` once every task in ``needs`` succeeded.

    Each input value is a reference (``"$goal.destination"``, ``"$price.total"``),
    a JSON literal, or a list/dict mixing both; ``"$$5"`` is the literal ``"$5"``.

    >>> Task(id="book", agent="book", needs=["price"], inputs={"amount": "$price.total"}).needs
    ['price']
    """

    # "goal" and duplicate ids are accepted here on purpose: check_plan reports
    # them with every other problem at once instead of failing on the first.
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=TASK_ID_PATTERN)
    agent: str
    needs: list[str] = Field(default_factory=list)
    inputs: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    """The tasks of a run, in the order the planner listed them.

    >>> Plan(tasks=[Task(id="price", agent="pricing")]).tasks[0].id
    'price'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tasks: list[Task]
