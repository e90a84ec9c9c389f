"""What :class:`~ledgerflow.machines.Orchestrator` calls return: where a run stands.

Example::

    run = await orch.start(wf, goal)
    run.status, run.outputs["book"], run.escalations
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from ledgerflow.machines.state import RunState

__all__ = ["RunResult"]


@dataclass(frozen=True, slots=True)
class RunResult:
    """Where a run stands after :meth:`Orchestrator.start`, ``resume`` or ``resolve``.

    ``outputs`` maps each succeeded task to its validated output model.
    """

    run_id: str
    status: str
    outputs: dict[str, BaseModel]
    reason: str
    state: RunState

    @property
    def escalations(self) -> list[str]:
        """Task ids waiting on a resolution."""
        return list(self.state.escalations)
