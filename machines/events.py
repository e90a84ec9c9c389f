"""The domain events: frozen msgspec tagged Structs, named in the past tense.

Each event is one entry of a run's log. The ``type`` tag is the class name, so
``json_extract(data, '$.type')`` and the envelope's ``type`` column agree.

Events that move a state machine record the move: :attr:`Event.src` and
:attr:`Event.dst` are the states before and after, the class names the
machine (``run`` or the task in ``task_id``) and the trigger, and ``reason`` is
the sentence a person reads in the decision log. Events that only record a
fact from the outside world (an output, an error, a resolution) leave ``src``
and ``dst`` empty, unless recording the fact itself moves a machine.

Decoding goes through one typed decoder::

    >>> ev = decode_event(b'{"type":"TaskReady","task_id":"price","src":"pending","dst":"ready"}')
    >>> ev.task_id, ev.trigger
    ('price', 'make_ready')

It also upgrades what earlier versions recorded under older names (the
tables of :mod:`ledgerflow.machines.upcasting`, which says how to evolve an
event; the stored bytes, which the hash chain covers, are never touched) and
refuses, with :class:`EventTooNewError`, an event only a newer version can read.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

import msgspec

from ledgerflow.machines import upcasting
from ledgerflow.machines.event_base import Event, RunEvent, TaskEvent
from ledgerflow.machines.step_events import StepRecorded, StepStarted
from ledgerflow.machines.upcasting import upcast_failure_names, upcast_workflow_ref
from ledgerflow.machines.versions import LOG_FORMAT, EventTooNewError, NewerLogFormat

__all__ = [
    "AgentFailed",
    "BudgetExhausted",
    "DeadlinePassed",
    "EscalationResolved",
    "Event",
    "EventTooNewError",
    "ForkedFrom",
    "LOG_FORMAT",
    "OutputAccepted",
    "OutputReceived",
    "OutputRejected",
    "PlanAccepted",
    "PlanProposed",
    "PlanRejected",
    "PlannedTask",
    "Problem",
    "ResolutionRequested",
    "RetryDue",
    "RetryScheduled",
    "RunCancelled",
    "RunCompleted",
    "RunEvent",
    "RunFailed",
    "RunResumed",
    "RunStarted",
    "RunSubmitted",
    "RunWaiting",
    "StepRecorded",
    "StepStarted",
    "TaskAbandoned",
    "TaskDispatched",
    "TaskEscalated",
    "TaskEvent",
    "TaskReady",
    "TaskSkipped",
    "TaskSucceeded",
    "TimerFired",
    "WorkflowGoalEvent",
    "decode_event",
    "decode_logged",
    "encode_event",
    "event_types",
]


class PlannedTask(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A task as accepted into the run (the plan's own shape, as data)."""

    id: str
    agent: str
    needs: list[str] = []
    inputs: dict[str, Any] = {}


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One reason a plan was rejected."""

    code: str
    message: str
    task_id: str | None = None


# -- run ---------------------------------------------------------------------


class WorkflowGoalEvent(RunEvent, frozen=True, kw_only=True):
    """A goal given to a workflow, by its stable name and where its code was (see loader)."""

    FACT: ClassVar[bool] = True
    workflow: str
    workflow_ref: str = ""
    goal: dict[str, Any]

    def __post_init__(self) -> None:
        # Upcasting happens here, as msgspec builds the event, so that the
        # replay path pays nothing for the events that record no names.
        ref = upcast_workflow_ref(self.workflow_ref)
        if ref is not self.workflow_ref:
            msgspec.structs.force_setattr(self, "workflow_ref", ref)


class RunStarted(WorkflowGoalEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "start"
    started_at: str
    #: What idempotency keys derive from: the run's own id, or, in a fork,
    #: its origin's (so a side effect redone in a fork carries the same key).
    key_base: str = ""
    max_concurrency: int
    max_retries: int | None = None
    max_cost: float | None = None
    deadline_s: float | None = None
    #: The store's limit on one event, so that the decider refuses an input it
    #: could not log (recorded: replay decides against the same limit).
    max_event_bytes: int | None = None
    #: The :data:`LOG_FORMAT` of the version that started the run (left out of
    #: the stored bytes while it is 1, so every log written so far reads as 1).
    log_format: int = 1

    def __post_init__(self) -> None:
        if self.log_format > LOG_FORMAT:
            raise NewerLogFormat(self.log_format)
        super().__post_init__()


class RunSubmitted(WorkflowGoalEvent, frozen=True, kw_only=True):
    """A goal queued for the worker pool (``Orchestrator.submit``): a worker starts it."""

    TRIGGER: ClassVar[str | None] = "submit"
    submitted_at: str


class PlanProposed(RunEvent, frozen=True, kw_only=True):
    """The planner's raw answer (or its error), recorded before it is checked."""

    FACT: ClassVar[bool] = True
    plan: Any = None
    error: str | None = None


class PlanAccepted(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "accept_plan"
    tasks: list[PlannedTask]


class PlanRejected(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "reject_plan"
    problems: list[Problem]


class BudgetExhausted(RunEvent, frozen=True, kw_only=True):
    """The run hit a budget limit; from now on nothing is dispatched on its own."""

    kind: str  # "max_retries" | "max_cost" | "deadline"
    limit: float
    spent: float


class DeadlinePassed(RunEvent, frozen=True, kw_only=True):
    """The run's deadline passed (a timer fact)."""

    FACT: ClassVar[bool] = True
    deadline_s: float


class RunWaiting(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "wait"
    escalations: list[str]


class RunCompleted(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "complete"


class RunFailed(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "fail"


class RunCancelled(RunEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "cancel"
    FACT: ClassVar[bool] = True
    by: str = ""


class RunResumed(RunEvent, frozen=True, kw_only=True):
    """A process took the run over again (after a crash, a failure or a fork)."""

    FACT: ClassVar[bool] = True
    by: str
    interrupted: list[str] = []


class ForkedFrom(RunEvent, frozen=True, kw_only=True):
    """The first event of a fork: whose prefix this run's log copies."""

    FACT: ClassVar[bool] = True
    origin_run_id: str
    at_seq: int
    #: When the fork was made: its deadline budget counts from here.
    started_at: str = ""
    #: The user asked for side effects whose input changed to be done again
    #: in the fork (by default such a task escalates instead of repeating).
    repeat_side_effects: bool = False


# -- tasks -------------------------------------------------------------------


class TaskReady(TaskEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "make_ready"


class TaskDispatched(TaskEvent, frozen=True, kw_only=True):
    """An attempt handed to an agent: exactly this input, under this key."""

    TRIGGER: ClassVar[str | None] = "dispatch"
    attempt: int
    input: dict[str, Any]
    idempotency_key: str
    timeout_s: float


class OutputReceived(TaskEvent, frozen=True, kw_only=True):
    """What the agent returned, verbatim, before validation."""

    TRIGGER: ClassVar[str | None] = "receive"
    FACT: ClassVar[bool] = True
    attempt: int
    output: Any
    tokens: int = 0
    cost: float = 0.0
    #: The attempt's duration (log format 2); None: not measured, as in format 1.
    duration_ms: float | None = None


class AgentFailed(TaskEvent, frozen=True, kw_only=True):
    """The agent raised, timed out, or returned something that cannot be logged."""

    FACT: ClassVar[bool] = True
    attempt: int
    error_type: str
    error_types: list[str] = []
    message: str = ""
    timed_out: bool = False
    tokens: int = 0
    cost: float = 0.0

    def __post_init__(self) -> None:
        # Names recorded by earlier versions become today's stable names
        # (ledgerflow.machines.upcasting); the stored bytes stay as they were.
        names = upcast_failure_names(self.error_type, self.error_types)
        if names is not None:
            msgspec.structs.force_setattr(self, "error_type", names[0])
            msgspec.structs.force_setattr(self, "error_types", names[1])


class OutputAccepted(TaskEvent, frozen=True, kw_only=True):
    attempt: int
    output: dict[str, Any]
    confidence: float | None = None


class OutputRejected(TaskEvent, frozen=True, kw_only=True):
    attempt: int
    errors: list[str] = []
    confidence: float | None = None
    low_confidence: bool = False


class RetryScheduled(TaskEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "schedule_retry"
    attempt: int
    next_attempt: int
    delay_s: float


class RetryDue(TaskEvent, frozen=True, kw_only=True, dict=True):
    """A retry's backoff elapsed (a timer fact); log format 1 recorded ``TimerFired``."""

    FACT: ClassVar[bool] = True

    @property
    def type(self) -> str:  # the recorded name, as the hash-chained type column holds it
        return str(self.__dict__.get("recorded_type", "RetryDue"))


TimerFired = RetryDue  # format 1's name, kept for code written against it


class TaskEscalated(TaskEvent, frozen=True, kw_only=True):
    """Handed to a person or a stricter rule; nothing downstream sees it meanwhile."""

    TRIGGER: ClassVar[str | None] = "escalate"
    kind: str
    candidate: Any = None


class EscalationResolved(TaskEvent, frozen=True, kw_only=True):
    """Who or what settled an escalation, and how (moves a waiting run back)."""

    MACHINE: ClassVar[str] = "run"
    TRIGGER: ClassVar[str | None] = "resume"
    FACT: ClassVar[bool] = True
    action: str  # "output" | "retry" | "abandon"
    by: str
    output: dict[str, Any] | None = None
    note: str = ""

    @property
    def machine(self) -> str:
        return "run"


class ResolutionRequested(TaskEvent, frozen=True, kw_only=True):
    """A resolution of a pool run's escalation, queued for the worker that picks the run up.

    Checked like :class:`EscalationResolved` when it is recorded; a worker
    applies it (as an ``EscalationResolved`` by the same ``by``), so no
    caller of ``resolve`` drives a pool run itself.
    """

    MACHINE: ClassVar[str] = "run"
    TRIGGER: ClassVar[str | None] = "requeue"
    FACT: ClassVar[bool] = True
    action: str
    by: str
    output: dict[str, Any] | None = None
    note: str = ""

    @property
    def machine(self) -> str:
        return "run"


class TaskSucceeded(TaskEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "succeed"


class TaskAbandoned(TaskEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "abandon"


class TaskSkipped(TaskEvent, frozen=True, kw_only=True):
    TRIGGER: ClassVar[str | None] = "skip"
    because: str


EVENT_CLASSES: Final = (
    RunStarted,
    PlanProposed,
    PlanAccepted,
    PlanRejected,
    TaskReady,
    TaskDispatched,
    OutputReceived,
    AgentFailed,
    OutputAccepted,
    OutputRejected,
    RetryScheduled,
    TimerFired,
    TaskEscalated,
    EscalationResolved,
    TaskSucceeded,
    TaskAbandoned,
    TaskSkipped,
    BudgetExhausted,
    DeadlinePassed,
    RunWaiting,
    RunCompleted,
    RunFailed,
    RunCancelled,
    RunResumed,
    ForkedFrom,
    StepStarted,
    StepRecorded,
    RunSubmitted,
    ResolutionRequested,
)

AnyEvent = (
    RunStarted
    | PlanProposed
    | PlanAccepted
    | PlanRejected
    | TaskReady
    | TaskDispatched
    | OutputReceived
    | AgentFailed
    | OutputAccepted
    | OutputRejected
    | RetryScheduled
    | TimerFired
    | TaskEscalated
    | EscalationResolved
    | TaskSucceeded
    | TaskAbandoned
    | TaskSkipped
    | BudgetExhausted
    | DeadlinePassed
    | RunWaiting
    | RunCompleted
    | RunFailed
    | RunCancelled
    | RunResumed
    | ForkedFrom
    | StepStarted
    | StepRecorded
    | RunSubmitted
    | ResolutionRequested
)

class _TypeTag(msgspec.Struct):
    """Just the tag of an event that did not decode (read only on the error path)."""

    type: str | None = None


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(AnyEvent)
_TAG_DECODER: Final = msgspec.json.Decoder(_TypeTag)
_KNOWN_TYPES: Final = frozenset(cls.__name__ for cls in EVENT_CLASSES)


def encode_event(event: Event) -> bytes:
    """The event as JSON bytes (its ``type`` tag included)."""
    return _ENCODER.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Decode one event, upgraded to today's names (:mod:`~ledgerflow.machines.upcasting`).

    Raises :class:`EventTooNewError` for an event only a newer version can
    read (:meth:`EventTooNewError.at` adds where it was found), and
    ``msgspec.ValidationError`` naming the bad field for any other bad data.
    The replay path: no options (they cost on every call), upcasts in two events'
    ``__post_init__``, a renamed type looked up only once today's types failed.

    Example::

        >>> decode_event(b'{"type":"AgentFailed","task_id":"a","attempt":1,'
        ...              b'"error_type":"machines.errors.PermanentError"}').error_type
        'ledgerflow.PermanentError'
    """
    try:
        return _DECODER.decode(data)
    except msgspec.ValidationError:
        tag = _unknown_tag(data)
        if tag is None:
            raise
        if tag not in upcasting.RENAMED_EVENTS:
            raise EventTooNewError(tag) from None
    except NewerLogFormat as exc:
        raise EventTooNewError("RunStarted", log_format=exc.log_format) from None
    event = _DECODER.decode(upcasting.renamed_event_data(data, upcasting.RENAMED_EVENTS[tag]))
    event.__dict__["recorded_type"] = tag  # read by the class's ``type`` (dict=True)
    return event


def decode_logged(data: bytes | str, seq: int, run_id: str) -> Event:
    """:func:`decode_event` for an event read from a log: its refusal names ``seq`` and run.

    Example::

        event = decode_logged(envelope.data, envelope.seq, envelope.run_id)
    """
    try:
        return decode_event(data)
    except EventTooNewError as exc:
        raise exc.at(seq, run_id) from None


def _unknown_tag(data: bytes | str) -> str | None:
    """The type tag of undecodable ``data`` if it names no event this version knows."""
    try:
        tag = _TAG_DECODER.decode(data).type
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # not even a tagged object: corrupt, not newer
    return tag if tag is not None and tag not in _KNOWN_TYPES else None


def event_types() -> list[str]:
    """Every event type name, in the order of the run's life."""
    return [cls.__name__ for cls in EVENT_CLASSES]
