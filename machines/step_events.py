"""The events of journaled steps: what an agent did inside one attempt (``ctx.step``).

They are facts (:attr:`Event.FACT`) of a task that move no machine; the fold
keeps the current attempt's steps, which a resumed attempt is served from
(:mod:`ledgerflow.machines.steps`).

Example::

    StepRecorded(task_id="price", attempt=1, index=0, name="openai.chat",
                 request={"args": [], "kwargs": {}}, request_hash="ab12...", result={...})
"""

from __future__ import annotations

from typing import Any, ClassVar

from ledgerflow.machines.event_base import TaskEvent

__all__ = ["StepEvent", "StepRecorded", "StepStarted"]


class StepEvent(TaskEvent, frozen=True, kw_only=True):
    """What every step event names: which step of which attempt, asked with what."""

    FACT: ClassVar[bool] = True
    attempt: int
    index: int
    name: str
    request: Any = None
    request_hash: str
    #: The attempt went live here where its log differed: the recorded steps
    #: from this index on no longer apply.
    discards_later: bool = False


class StepStarted(StepEvent, frozen=True, kw_only=True):
    """A side-effecting step about to run: durable before its function is called.

    A log that holds this with no :class:`StepRecorded` for the same
    ``(attempt, index)`` is a step whose outcome is unknown: resume escalates.
    """


class StepRecorded(StepEvent, frozen=True, kw_only=True):
    """One journaled step of an attempt (``ctx.step``): its request, result or error, usage.

    ``request`` is omitted when the step's :class:`StepStarted` holds it
    (side-effecting steps); ``error_type`` is ``""`` when the step returned.
    Indices are taken in call order, so a step nested in another's function
    has a higher index than its parent and is recorded before it.
    """

    result: Any = None
    error_type: str = ""
    error_types: list[str] = []
    message: str = ""
    tokens: int = 0
    cost: float = 0.0
    duration_ms: float = 0.0
    detail: dict[str, Any] = {}
    side_effect: bool = False
    #: Steps taken inside this one's function (indices ``index + 1`` on):
    #: skipped when this step is served from the log instead of called.
    nested: int = 0
