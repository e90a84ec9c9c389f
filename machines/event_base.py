"""The base classes of every domain event (see :mod:`ledgerflow.machines.events`).

Kept apart so the event families defined in other modules
(:mod:`ledgerflow.machines.step_events`) share them without a cycle.

Example::

    class TaskReady(TaskEvent, frozen=True, kw_only=True):
        TRIGGER: ClassVar[str | None] = "make_ready"
"""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = ["Event", "RunEvent", "TaskEvent"]


class Event(msgspec.Struct, frozen=True, kw_only=True, tag=True, omit_defaults=True):
    """Base of every domain event."""

    MACHINE: ClassVar[str] = "run"
    TRIGGER: ClassVar[str | None] = None
    #: True for events that record a fact from outside the orchestrator's
    #: code (a goal, an agent's output or error, a human's decision, a timer),
    #: as opposed to a decision the orchestrator derived from facts.
    FACT: ClassVar[bool] = False

    reason: str = ""
    src: str = ""
    dst: str = ""

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def trigger(self) -> str | None:
        """The trigger this event fired, or ``None`` if it moved no machine."""
        return self.TRIGGER if self.dst else None

    @property
    def machine(self) -> str:
        """``run`` or ``task:<id>``: which state machine the event belongs to."""
        return "run"


class RunEvent(Event, frozen=True, kw_only=True):
    """An event of the run's own state machine."""


class TaskEvent(Event, frozen=True, kw_only=True):
    """An event of one task's state machine."""

    MACHINE: ClassVar[str] = "task"
    task_id: str

    @property
    def machine(self) -> str:
        return f"task:{self.task_id}"
