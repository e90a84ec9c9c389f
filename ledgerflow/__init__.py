"""ledgerflow: deterministic, replayable, auditable orchestration of LLM agents.

Everything installs under this one package. Its parts import one way,
``replay -> machines -> {contracts, eventstore}``; the names a service needs
are re-exported here, so one import line is enough::

    from ledgerflow import Orchestrator, Workflow, open_store

    async with open_store("runs.db") as store:
        run = await Orchestrator(store).start(wf, goal)
"""

from ledgerflow.contracts import Plan, Task
from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import open_store
from ledgerflow.machines import (
    AgentContext,
    Budget,
    Orchestrator,
    PermanentError,
    Resolution,
    RetryPolicy,
    Workflow,
)

__all__ = [
    "AgentContext",
    "Budget",
    "LedgerflowError",
    "Orchestrator",
    "PermanentError",
    "Plan",
    "Resolution",
    "RetryPolicy",
    "Task",
    "Workflow",
    "open_store",
]
__version__ = "0.2.0"
