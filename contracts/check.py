"""check_plan: every reason a plan cannot run, found before anything is dispatched."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, TypeAdapter, ValidationError

from ledgerflow.contracts.agent import AgentContract
from ledgerflow.contracts.cycles import find_cycles
from ledgerflow.contracts.errors import ReferenceSyntaxError
from ledgerflow.contracts.plan import GOAL, Plan, Task
from ledgerflow.contracts.problems import PlanProblem, ProblemCode
from ledgerflow.contracts.references import iter_strings, parse_reference, unescape
from ledgerflow.contracts.typecheck import (
    Found,
    Missing,
    obviously_incompatible,
    path_annotation,
    suggest,
    type_name,
)
from ledgerflow.contracts.validation import describe_errors

__all__ = ["check_plan"]


def check_plan(
    plan: Plan,
    goal: type[BaseModel],
    agents: Mapping[str, AgentContract],
) -> list[PlanProblem]:
    """Every problem with ``plan`` against the goal model and the agents' contracts.

    An empty list means the plan is accepted. Problems come in a fixed order
    (plan-level first, then by task, then by input field) so a replay of the
    decision reproduces the list exactly.

    >>> class TripGoal(BaseModel):
    ...     destination: str
    >>> class PricingInput(BaseModel):
    ...     destination: str
    >>> class PricingOutput(BaseModel):
    ...     total: float
    >>> class BookingInput(BaseModel):
    ...     amount: float
    >>> agents = {"pricing": AgentContract("pricing", PricingInput, PricingOutput),
    ...           "book": AgentContract("book", BookingInput, PricingOutput)}
    >>> plan = Plan(tasks=[
    ...     Task(id="price", agent="pricing", inputs={"destination": "$goal.destination"}),
    ...     Task(id="book", agent="book", needs=["price"], inputs={"amount": "$price.totl"})])
    >>> [p.message for p in check_plan(plan, TripGoal, agents)]  # doctest: +NORMALIZE_WHITESPACE
    ["Task 'book' maps 'amount' from '$price.totl', but PricingOutput declares no field
    'totl' (did you mean 'total'? fields: total)."]
    """
    if not plan.tasks:
        return [
            PlanProblem(
                ProblemCode.EMPTY_PLAN,
                None,
                "The plan has no tasks; a plan needs at least one task to run.",
            )
        ]
    first: dict[str, Task] = {}
    edges: dict[str, list[str]] = {}
    for task in plan.tasks:
        first.setdefault(task.id, task)
        edges.setdefault(task.id, []).extend(task.needs)
    problems = [
        PlanProblem(ProblemCode.DEPENDENCY_CYCLE, None, _cycle_message(cycle.path, cycle.members))
        for cycle in find_cycles(list(first), edges)
    ]
    positions: dict[str, list[int]] = {}
    for position, task in enumerate(plan.tasks, start=1):
        positions.setdefault(task.id, []).append(position)
    ctx = _Context(goal=goal, agents=agents, first=first, positions=positions)
    for position, task in enumerate(plan.tasks, start=1):
        problems.extend(_task_problems(ctx, task, position))
    return problems


@dataclass(frozen=True)
class _Context:
    """What every task is checked against."""

    goal: type[BaseModel]
    agents: Mapping[str, AgentContract]
    first: Mapping[str, Task]  # task id -> its first task, the one references read
    positions: Mapping[str, list[int]]  # task id -> 1-based positions in the plan


def _cycle_message(path: tuple[str, ...], members: tuple[str, ...]) -> str:
    also = [m for m in members if m not in path]
    trapped = f", which also traps {', '.join(also)}" if also else ""
    return (
        f"Tasks form a dependency cycle: {' -> '.join(path)} (each needs the next){trapped}; "
        f"remove one of these needs."
    )


def _task_problems(ctx: _Context, task: Task, position: int) -> Iterator[PlanProblem]:
    tid = task.id
    positions, first, agents = ctx.positions, ctx.first, ctx.agents

    def problem(code: ProblemCode, message: str, field: str | None = None) -> PlanProblem:
        return PlanProblem(code, tid, message, field)

    if positions[tid][0] != position:
        places = " and ".join(str(p) for p in positions[tid])
        yield problem(
            ProblemCode.DUPLICATE_TASK,
            f"Task id {tid!r} is used by tasks {places}; give each task a unique id.",
        )
    if tid == GOAL:
        yield problem(
            ProblemCode.RESERVED_TASK_ID,
            f"Task id {GOAL!r} is reserved for the run's goal in references; rename the task.",
        )
    contract = agents.get(task.agent)
    if contract is None:
        names = sorted(agents)
        yield problem(
            ProblemCode.UNKNOWN_AGENT,
            f"Task {tid!r} names agent {task.agent!r}, which is not registered "
            f"({suggest(task.agent, names)}agents: {', '.join(names) or 'none'}).",
        )
    for need in task.needs:
        if need == GOAL:
            yield problem(
                ProblemCode.UNKNOWN_TASK,
                f"Task {tid!r} needs {GOAL!r}, which is not a task; the goal is always "
                f"available, so remove it from needs.",
            )
        elif need not in first:
            ids = list(first)
            yield problem(
                ProblemCode.UNKNOWN_TASK,
                f"Task {tid!r} needs {need!r}, which is not a task in this plan "
                f"({suggest(need, ids)}tasks: {', '.join(ids)}).",
            )
    keys = _input_keys(contract.input) if contract else {}
    for field, value in task.inputs.items():
        target: str | None = None
        if contract is not None:
            target = keys.get(field)
            if target is None:
                declared = list(keys)
                yield problem(
                    ProblemCode.UNDECLARED_INPUT,
                    f"Task {tid!r} maps input {field!r}, but {contract.input.__name__} declares "
                    f"no field {field!r} ({suggest(field, declared)}fields: "
                    f"{', '.join(sorted(declared)) or 'none'}).",
                    field,
                )
        model = contract.input if contract and target else None
        yield from _value_problems(ctx, task, field, value, model=model, target=target)
    if contract is not None:
        mapped = {keys[k] for k in task.inputs if k in keys}
        for name in _required_fields(contract.input):
            if name not in mapped:
                yield problem(
                    ProblemCode.MISSING_INPUT,
                    f"Task {tid!r} leaves required input {name!r} of "
                    f"{contract.input.__name__} unmapped; map it from the goal, an upstream "
                    f"output, or a literal.",
                    name,
                )


def _value_problems(
    ctx: _Context,
    task: Task,
    field: str,
    value: Any,
    *,
    model: type[BaseModel] | None,
    target: str | None,
) -> Iterator[PlanProblem]:
    tid = task.id
    first, goal, agents = ctx.first, ctx.goal, ctx.agents
    texts = list(iter_strings(value))
    for text in texts:
        lead = f"Task {tid!r} maps {field!r} from {text!r}"
        try:
            ref = parse_reference(text)
        except ReferenceSyntaxError as exc:
            yield PlanProblem(
                ProblemCode.BAD_REFERENCE,
                tid,
                f"{lead}, which is not a valid reference: {exc.reason}; escape a literal "
                f"dollar sign as '$$'.",
                field,
            )
            continue
        assert ref is not None  # iter_strings yields only '$'-prefixed, non-'$$' strings
        root: type[BaseModel] | None
        if ref.source == GOAL:
            root = goal
        elif ref.source in first:
            if ref.source not in task.needs:
                yield PlanProblem(
                    ProblemCode.REFERENCE_NOT_NEEDED,
                    tid,
                    f"{lead}, but {ref.source!r} is not in its needs; add {ref.source!r} to "
                    f"needs so it runs first.",
                    field,
                )
            upstream = agents.get(first[ref.source].agent)
            root = upstream.output if upstream else None
        else:
            ids = list(first)
            yield PlanProblem(
                ProblemCode.UNKNOWN_REFERENCE_SOURCE,
                tid,
                f"{lead}, but {ref.source!r} is neither {GOAL!r} nor a task in this plan "
                f"({suggest(ref.source, ids)}tasks: {', '.join(ids)}).",
                field,
            )
            continue
        if root is None:
            continue  # the upstream agent is unknown, which is reported on its own task
        found = path_annotation(root, ref.source, ref.path)
        if isinstance(found, Missing):
            yield PlanProblem(
                ProblemCode.UNKNOWN_FIELD, tid, f"{lead}, but {found.message}.", field
            )
        elif (
            isinstance(found, Found) and model is not None and target is not None and value == text
        ):
            expected = model.model_fields[target].annotation
            if obviously_incompatible(found.annotation, expected):
                yield PlanProblem(
                    ProblemCode.TYPE_MISMATCH,
                    tid,
                    f"{lead}, but that is {type_name(found.annotation)} and "
                    f"{model.__name__}.{target} expects {type_name(expected)}; map a field "
                    f"of a matching type instead.",
                    field,
                )
    if not texts and model is not None and target is not None:
        literal = _unescape_all(value)
        rejected = _literal_errors(model, target, literal)
        if rejected:
            shown = repr(literal) if len(repr(literal)) <= 60 else repr(literal)[:57] + "..."
            yield PlanProblem(
                ProblemCode.INVALID_LITERAL,
                tid,
                f"Task {tid!r} gives {field!r} the literal {shown}, which "
                f"{model.__name__}.{target} rejects: {rejected}.",
                field,
            )


def _unescape_all(value: Any) -> Any:
    if isinstance(value, str):
        return unescape(value)
    if isinstance(value, dict):
        return {k: _unescape_all(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_unescape_all(v) for v in value]
    return value


@functools.lru_cache(maxsize=1024)
def _required_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(name for name, info in model.model_fields.items() if info.is_required())


# Cached: a 10,000-task plan asks the same few models again and again.
@functools.lru_cache(maxsize=1024)
def _input_keys(model: type[BaseModel]) -> dict[str, str]:
    """Input key -> field name, for every key ``model.model_validate`` accepts."""
    config = model.model_config
    by_name = bool(config.get("populate_by_name") or config.get("validate_by_name"))
    keys: dict[str, str] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        if alias and alias != name:
            keys[alias] = name
            if by_name:
                keys[name] = name
        else:
            keys[name] = name
    return keys


@functools.lru_cache(maxsize=1024)
def _adapter(model: type[BaseModel], field: str) -> TypeAdapter[Any]:
    info = model.model_fields[field]
    # The metadata carries the field's constraints (gt=0, max_length=...).
    if not info.metadata:
        return TypeAdapter(info.annotation)
    return TypeAdapter(Annotated[info.annotation, *info.metadata])


def _literal_errors(model: type[BaseModel], field: str, literal: Any) -> str | None:
    try:
        # msgspec, as the recorded plan is encoded: the literal is checked as logged.
        encoded = msgspec.json.encode(literal)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        return f"it is not JSON ({exc})"
    try:
        # JSON mode, like the resolved input after the plan has been recorded.
        _adapter(model, field).validate_json(encoded)
    except ValidationError as exc:
        return "; ".join(describe_errors(exc))
    return None
