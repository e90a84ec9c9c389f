"""Declaration mistakes are raised where the workflow is declared, not mid-run."""

from __future__ import annotations

from typing import Any

import pytest
from machines_helpers import Goal, SearchIn, SearchOut, TextOut

from ledgerflow import machines
from ledgerflow.machines.workflow import Resolution


def test_sync_agent_rejected_at_declaration() -> None:
    wf = machines.Workflow("decl", goal=Goal)
    with pytest.raises(machines.WorkflowDefinitionError, match="async"):
        @wf.agent(input=SearchIn, output=SearchOut)
        def search(inp: SearchIn, ctx: machines.AgentContext) -> Any:
            return None


def test_duplicate_agent_and_planner_rejected() -> None:
    wf = machines.Workflow("decl", goal=Goal)

    async def search(inp: SearchIn, ctx: machines.AgentContext) -> SearchOut:
        return SearchOut(price=1.0)

    wf.agent(input=SearchIn, output=SearchOut)(search)
    with pytest.raises(machines.WorkflowDefinitionError, match="already has an agent"):
        wf.agent(input=SearchIn, output=SearchOut)(search)

    async def planner(goal: Goal, ctx: machines.AgentContext) -> Any:
        return None

    wf.planner(planner)
    with pytest.raises(machines.WorkflowDefinitionError, match="already has a planner"):
        wf.planner(planner)


def test_min_confidence_needs_a_confidence_field() -> None:
    wf = machines.Workflow("decl", goal=Goal)

    async def dump(inp: SearchIn, ctx: machines.AgentContext) -> TextOut:
        return TextOut(text="")

    with pytest.raises(machines.WorkflowDefinitionError, match="confidence"):
        wf.agent(input=SearchIn, output=TextOut, min_confidence=0.5)(dump)


def test_sync_escalation_handler_rejected_at_declaration() -> None:
    wf = machines.Workflow("decl", goal=Goal)

    def reviewer(request: machines.EscalationRequest) -> Resolution | None:
        return None

    with pytest.raises(machines.WorkflowDefinitionError, match="async"):
        wf.on_escalation(reviewer)  # type: ignore[type-var]
    assert wf.escalation_handler is None


def test_unknown_agent_spec_lookup_names_the_known_ones() -> None:
    wf = machines.Workflow("decl", goal=Goal)
    with pytest.raises(machines.WorkflowDefinitionError, match="no agent 'ghost'"):
        wf.spec("ghost")
