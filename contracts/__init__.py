"""What flows between agents: plans, references, contracts and their checks.

Pure and deterministic throughout (no clock, randomness or I/O), because the
runtime calls it inside its pure ``decide`` and replays must agree::

    problems = check_plan(plan, TripGoal, agents)      # [] means accepted
    inputs = resolve_inputs(task, goal_json, outputs_json)
    verdict = validate_output(PricingOutput, raw, task_id="price", min_confidence=0.7)

``contracts`` knows nothing of the event store or the runtime.
"""

if not __name__.startswith("ledgerflow."):
    # Imported by its folder name (a script run from the repo root): a second
    # copy of the classes would record module paths, not ledgerflow's names.
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

from ledgerflow.contracts.agent import AgentContract
from ledgerflow.contracts.check import check_plan
from ledgerflow.contracts.errors import (
    ConfidenceContractError,
    ContractError,
    InputContractError,
    PlanRejectedError,
    ReferenceResolutionError,
    ReferenceSyntaxError,
)
from ledgerflow.contracts.plan import Plan, Task
from ledgerflow.contracts.problems import PlanProblem, ProblemCode
from ledgerflow.contracts.references import Reference, parse_reference, references_in
from ledgerflow.contracts.resolve import resolve_inputs
from ledgerflow.contracts.validation import (
    OutputVerdict,
    confidence_field,
    validate_input,
    validate_output,
)

__all__ = [
    "AgentContract",
    "ConfidenceContractError",
    "ContractError",
    "InputContractError",
    "OutputVerdict",
    "Plan",
    "PlanProblem",
    "PlanRejectedError",
    "ProblemCode",
    "Reference",
    "ReferenceResolutionError",
    "ReferenceSyntaxError",
    "Task",
    "check_plan",
    "confidence_field",
    "parse_reference",
    "references_in",
    "resolve_inputs",
    "validate_input",
    "validate_output",
]
