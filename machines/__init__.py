"""The orchestrator: domain events, state machines, the pure decider and the runtime.

Example::

    from ledgerflow.machines import Workflow, Orchestrator, RetryPolicy, Budget, AgentContext

    wf = Workflow("travel", goal=TripGoal, budget=Budget(max_retries=10))
"""

if not __name__.startswith("ledgerflow."):
    # Imported by its folder name (a script run from the repo root): a second
    # copy of the classes would record module paths, not ledgerflow's names.
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

from ledgerflow.machines.decide import advance, decide
from ledgerflow.machines.errors import (
    BudgetExhaustedError,
    ChainBrokenError,
    IllegalTransitionError,
    InvalidRunIdError,
    PermanentError,
    RecordedStepError,
    RecordingMissError,
    ResolutionError,
    RunBusyError,
    RunExistsError,
    RunNotFoundError,
    StepMismatchError,
    UnloggableValueError,
    WorkflowDefinitionError,
)
from ledgerflow.machines.events import Event, decode_event, encode_event, event_types
from ledgerflow.machines.evolve import evolve, fold
from ledgerflow.machines.fsm import RunStatus, TaskStatus
from ledgerflow.machines.loader import WorkflowNotFoundError, find_workflow, load_workflow
from ledgerflow.machines.observers import RunObserver
from ledgerflow.machines.orchestrator import Orchestrator, load_run_state
from ledgerflow.machines.policies import Budget, RetryPolicy
from ledgerflow.machines.recording import Recording
from ledgerflow.machines.registry import WorkflowNameClashError, register
from ledgerflow.machines.results import RunResult
from ledgerflow.machines.state import Escalation, RunState, TaskState
from ledgerflow.machines.step_log import StepView, step_totals, steps_of
from ledgerflow.machines.steps import Metered
from ledgerflow.machines.versions import EventTooNewError
from ledgerflow.machines.worker import Worker
from ledgerflow.machines.workflow import (
    AgentContext,
    AgentSpec,
    EscalationRequest,
    Resolution,
    Workflow,
    idempotency_key,
)

__all__ = [
    "AgentContext",
    "AgentSpec",
    "Budget",
    "BudgetExhaustedError",
    "ChainBrokenError",
    "Escalation",
    "EscalationRequest",
    "Event",
    "EventTooNewError",
    "IllegalTransitionError",
    "InvalidRunIdError",
    "Metered",
    "Orchestrator",
    "PermanentError",
    "RecordedStepError",
    "Recording",
    "RecordingMissError",
    "Resolution",
    "ResolutionError",
    "RetryPolicy",
    "RunBusyError",
    "RunExistsError",
    "RunNotFoundError",
    "RunObserver",
    "RunResult",
    "RunState",
    "RunStatus",
    "StepMismatchError",
    "StepView",
    "TaskState",
    "TaskStatus",
    "UnloggableValueError",
    "Worker",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowNameClashError",
    "WorkflowNotFoundError",
    "advance",
    "decide",
    "decode_event",
    "encode_event",
    "event_types",
    "evolve",
    "find_workflow",
    "fold",
    "idempotency_key",
    "load_run_state",
    "load_workflow",
    "register",
    "step_totals",
    "steps_of",
]
