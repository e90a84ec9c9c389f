"""The orchestrator: domain events, state machines, the pure decider and the runtime.

Example::

    from machines import Workflow, Orchestrator, RetryPolicy, Budget, AgentContext

    wf = Workflow("travel", goal=TripGoal, budget=Budget(max_retries=10))
"""

from machines.decide import advance, decide
from machines.errors import (
    IllegalTransitionError,
    PermanentError,
    ResolutionError,
    RunBusyError,
    RunNotFoundError,
    WorkflowDefinitionError,
)
from machines.events import Event, decode_event, encode_event, event_types
from machines.evolve import evolve, fold
from machines.fsm import RunStatus, TaskStatus
from machines.loader import load_workflow
from machines.policies import Budget, RetryPolicy
from machines.runtime import Orchestrator, RunResult, load_run_state
from machines.state import Escalation, RunState, TaskState
from machines.workflow import (
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
    "Escalation",
    "EscalationRequest",
    "Event",
    "IllegalTransitionError",
    "Orchestrator",
    "PermanentError",
    "Resolution",
    "ResolutionError",
    "RetryPolicy",
    "RunBusyError",
    "RunNotFoundError",
    "RunResult",
    "RunState",
    "RunStatus",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowDefinitionError",
    "advance",
    "decide",
    "decode_event",
    "encode_event",
    "event_types",
    "evolve",
    "fold",
    "idempotency_key",
    "load_run_state",
    "load_workflow",
]
