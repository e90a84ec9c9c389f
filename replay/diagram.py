"""``ledgerflow diagram``: the state machines and a workflow's agents, as Mermaid or Graphviz.

The machines are drawn from the one transition table
(:data:`~ledgerflow.machines.fsm.RUN_TABLE` and
:data:`~ledgerflow.machines.fsm.TASK_TABLE`, compiled from the ``transitions``
machines the runtime decides with), never from a list kept here, so a
diagram cannot disagree with what a run does. A workflow is drawn from its
declaration: the goal and the planner, and each agent with its input and
output contracts (field names and types read from the pydantic models),
``side_effect``/``idempotent`` and its limits.

Output is deterministic: states in the order of a run's life (the enum's),
transitions sorted by source, trigger and destination, agents by name, a
model's fields in their declaration order. Mermaid has one diagram per
document, so a machine drawing (``stateDiagram-v2``) and a workflow drawing
(``flowchart``) asked for together are two documents, one after the other,
separated by a blank line; Graphviz gets one ``digraph`` with a cluster each.

Example::

    >>> print(machines_mermaid(["run"]).splitlines()[0])
    stateDiagram-v2
    >>> text = render_diagram(workflow=load_workflow("ledgerflow.examples.travel:wf"),
    ...                       fmt="dot", machines=[])
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Literal

import click
from pydantic import BaseModel

from ledgerflow.machines import AgentSpec, Workflow, load_workflow
from ledgerflow.machines.fsm import (
    RUN_MACHINE,
    RUN_TABLE,
    TASK_MACHINE,
    TASK_TABLE,
    RunStatus,
    TaskStatus,
)
from ledgerflow.replay.cli_support import friendly, workflow_ref

__all__ = [
    "FORMATS",
    "MACHINES",
    "Transition",
    "diagram",
    "machines_dot",
    "machines_mermaid",
    "register",
    "render_diagram",
    "transitions_of",
    "type_name",
    "workflow_dot",
    "workflow_mermaid",
]

FORMATS: Final = ("mermaid", "dot")
#: The machines a diagram can draw, in the order they are drawn.
MACHINES: Final = ("run", "task")

MachineName = Literal["run", "task"]


@dataclass(frozen=True, slots=True, order=True)
class Transition:
    """One entry of a machine's table: ``trigger`` moves ``source`` to ``dest``."""

    machine: str
    source: str
    trigger: str
    dest: str


def _machine(name: str) -> tuple[dict[tuple[Any, str], Any], Any]:
    if name == "run":
        return RUN_TABLE, RUN_MACHINE
    if name == "task":
        return TASK_TABLE, TASK_MACHINE
    raise ValueError(f"No machine named {name!r} (there are: {', '.join(MACHINES)}).")


def _states(name: str) -> list[StrEnum]:
    """The machine's states in the order of a run's life (its enum's order)."""
    _machine(name)  # refuses an unknown name
    return list(RunStatus) if name == "run" else list(TaskStatus)


def transitions_of(name: str) -> list[Transition]:
    """Every transition of machine ``name`` (``run`` or ``task``), from the one table.

    Sorted by the source's place in the run's life, then trigger, then destination.

    Example::

        >>> transitions_of("task")[0]
        Transition(machine='task', source='pending', trigger='make_ready', dest='ready')
    """
    table, _ = _machine(name)
    order = {state: i for i, state in enumerate(_states(name))}
    rows = sorted(table.items(), key=lambda kv: (order[kv[0][0]], kv[0][1], order[kv[1]]))
    return [Transition(name, src.value, trigger, dest.value) for (src, trigger), dest in rows]


def _initial(name: str) -> str:
    _, machine = _machine(name)
    return str(machine.initial)


def _terminal(name: str) -> list[str]:
    return [s.value for s in _states(name) if getattr(s, "terminal", False)]


# -- types and labels --------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A field's type as a person writes it: ``list[Hotel]``, ``str | None``.

    Example::

        >>> type_name(list[int] | None)
        'list[int] | None'
    """
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        head = getattr(origin, "__name__", None) or str(origin).replace("typing.", "")
        return f"{head}[{', '.join(type_name(a) for a in args)}]" if args else head
    if annotation is Ellipsis:
        return "..."
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _fields(model: type[BaseModel]) -> list[str]:
    """``name: type`` per field, in declaration order; ``(optional)`` when it has a default."""
    return [f"{name}: {type_name(info.annotation)}" + ("" if info.is_required() else " (optional)")
            for name, info in model.model_fields.items()]


def _contract(kind: str, model: type[BaseModel]) -> list[str]:
    """A contract's lines: ``input PricingInput`` then its fields."""
    return [f"{kind} {model.__name__}", *_fields(model)]


def _agent_lines(spec: AgentSpec) -> list[str]:
    """What bounds and marks an agent: retries, timeout, confidence, side effects, limits."""
    retry = spec.retry
    lines = [f"{getattr(spec.fn, '__name__', spec.name)}(input, ctx)",
             f"retry: {retry.max_attempts} attempt(s), backoff {retry.backoff_s:g} s",
             f"timeout: {spec.timeout_s:g} s"]
    if spec.min_confidence is not None:
        lines.append(f"min_confidence: {spec.min_confidence:g}")
    if spec.side_effect:
        lines.append("side_effect, idempotent" if spec.idempotent
                     else "side_effect, not idempotent (escalates instead of repeating)")
    elif spec.idempotent:
        lines.append("idempotent")
    if spec.max_concurrent is not None:
        lines.append(f"max_concurrent: {spec.max_concurrent}")
    if spec.per_minute is not None:
        lines.append(f"per_minute: {spec.per_minute}")
    return lines


def _planner_lines(wf: Workflow) -> list[str]:
    fn = wf.planner_fn
    name = getattr(fn, "__name__", "?") if fn is not None else "none declared"
    budget = wf.budget
    limits = [f"{label} {value:g}" for label, value in (
        ("max_retries", budget.max_retries), ("max_cost", budget.max_cost),
        ("deadline_s", budget.deadline_s)) if value is not None]
    return [f"planner {name}", f"timeout: {wf.planner_timeout_s:g} s",
            f"max_concurrency: {wf.max_concurrency}",
            "budget: " + (", ".join(limits) or "no limits")]


def _node_id(prefix: str, index: int, name: str) -> str:
    # An agent's name may hold any character; the id must not, and must stay unique.
    return f"{prefix}{index}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


# -- mermaid -----------------------------------------------------------------


def _mm(text: str) -> str:
    """Text safe inside a Mermaid quoted label (its entity codes, ``#`` first)."""
    return (text.replace("#", "#35;").replace('"', "#quot;")
            .replace("<", "#lt;").replace(">", "#gt;"))


def _mm_label(lines: Sequence[str]) -> str:
    return '"' + "<br/>".join(_mm(line) for line in lines) + '"'


def _mermaid_machine(name: str, indent: str) -> list[str]:
    sid = {state.value: f"{name}_{state.value}" for state in _states(name)}
    out = [f'{indent}state "{state}" as {sid[state]}' for state in sid]
    out.append(f"{indent}[*] --> {sid[_initial(name)]}")
    out += [f"{indent}{sid[t.source]} --> {sid[t.dest]} : {t.trigger}"
            for t in transitions_of(name)]
    out += [f"{indent}{sid[state]} --> [*]" for state in _terminal(name)]
    return out


def machines_mermaid(names: Sequence[str]) -> str:
    """The machines ``names`` as one Mermaid ``stateDiagram-v2`` (a composite state each).

    Example::

        >>> "run_created --> run_queued : submit" in machines_mermaid(["run"])
        True
    """
    lines = ["stateDiagram-v2", "    direction LR"]
    chosen = [m for m in MACHINES if m in names]
    if len(chosen) == 1:
        lines += _mermaid_machine(chosen[0], "    ")
    else:
        for name in chosen:
            lines.append(f"    state {name} {{")
            lines += _mermaid_machine(name, "        ")
            lines.append("    }")
    return "\n".join(lines) + "\n"


def workflow_mermaid(wf: Workflow) -> str:
    """Workflow ``wf`` as a Mermaid ``flowchart``: goal, planner, each agent and its contracts.

    Example::

        print(workflow_mermaid(load_workflow("ledgerflow.examples.travel:wf")))
    """
    lines = ["flowchart LR",
             f"    goal[/{_mm_label(_contract('goal', wf.goal))}/]",
             f"    planner{{{{{_mm_label([f'workflow {wf.name}', *_planner_lines(wf)])}}}}}",
             "    goal --> planner"]
    handler = wf.escalation_handler
    if handler is not None:
        label = _mm_label(["on_escalation", getattr(handler, "__name__", "?")])
        lines.append(f"    escalations{{{{{label}}}}}")
    for i, name in enumerate(sorted(wf.agents)):
        spec = wf.agents[name]
        node = _node_id("a", i, name)
        lines += [
            f'    subgraph {node} [{_mm_label([f"agent {name}"])}]',
            f"        {node}_in[/{_mm_label(_contract('input', spec.input))}/]",
            f"        {node}_fn[{_mm_label(_agent_lines(spec))}]",
            f"        {node}_out[/{_mm_label(_contract('output', spec.output))}/]",
            f"        {node}_in --> {node}_fn",
            f"        {node}_fn --> {node}_out",
            "    end",
            f"    planner -.->|plans tasks of| {node}_in",
        ]
        if handler is not None:
            lines.append(f"    {node}_fn -.->|escalates| escalations")
    return "\n".join(lines) + "\n"


# -- graphviz ----------------------------------------------------------------


def _dq(text: str) -> str:
    """A Graphviz double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_label(lines: Sequence[str]) -> str:
    # \l ends a left-justified line: contracts read as lists, not centred text.
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + "".join(f"{line}\\l" for line in escaped) + '"'


def _dot_machine(name: str) -> list[str]:
    nid = {state.value: _dq(f"{name}:{state.value}") for state in _states(name)}
    terminal = set(_terminal(name))
    start = _dq(f"{name}:[*]")
    out = [f"  subgraph {_dq(f'cluster_{name}')} {{", f"    label={_dq(f'{name} machine')};",
           f"    {start} [shape=point, label=\"\"];"]
    shape = {s: "doublecircle" if s in terminal else "ellipse" for s in nid}
    out += [f"    {nid[s]} [label={_dq(s)}, shape={shape[s]}];" for s in nid]
    out.append(f"    {start} -> {nid[_initial(name)]};")
    out += [f"    {nid[t.source]} -> {nid[t.dest]} [label={_dq(t.trigger)}];"
            for t in transitions_of(name)]
    out.append("  }")
    return out


def _dot_workflow(wf: Workflow) -> list[str]:
    out = [f"  subgraph {_dq('cluster_workflow')} {{", f"    label={_dq(f'workflow {wf.name}')};",
           f"    \"wf:goal\" [shape=parallelogram, "
           f"label={_dot_label(_contract('goal', wf.goal))}];",
           f"    \"wf:planner\" [shape=hexagon, label={_dot_label(_planner_lines(wf))}];",
           "    \"wf:goal\" -> \"wf:planner\";"]
    handler = wf.escalation_handler
    if handler is not None:
        label = _dot_label(["on_escalation", getattr(handler, "__name__", "?")])
        out.append(f"    \"wf:escalations\" [shape=hexagon, label={label}];")
    for i, name in enumerate(sorted(wf.agents)):
        spec = wf.agents[name]
        node = _node_id("a", i, name)
        ids = {part: _dq(f"wf:{node}_{part}") for part in ("in", "fn", "out")}
        out += [
            f"    subgraph {_dq(f'cluster_{node}')} {{",
            f"      label={_dq(f'agent {name}')};",
            f"      {ids['in']} [shape=note, label={_dot_label(_contract('input', spec.input))}];",
            f"      {ids['fn']} [shape=box, label={_dot_label(_agent_lines(spec))}];",
            f"      {ids['out']} [shape=note, "
            f"label={_dot_label(_contract('output', spec.output))}];",
            f"      {ids['in']} -> {ids['fn']};",
            f"      {ids['fn']} -> {ids['out']};",
            "    }",
            f"    \"wf:planner\" -> {ids['in']} [style=dashed, label=\"plans tasks of\"];",
        ]
        if handler is not None:
            out.append(f"    {ids['fn']} -> \"wf:escalations\" "
                       "[style=dotted, label=\"escalates\"];")
    out.append("  }")
    return out


def _dot(sections: list[list[str]]) -> str:
    lines = ["digraph ledgerflow {", "  rankdir=LR;", "  node [fontname=\"Helvetica\"];",
             "  edge [fontname=\"Helvetica\"];"]
    for section in sections:
        lines += section
    lines.append("}")
    return "\n".join(lines) + "\n"


def machines_dot(names: Sequence[str]) -> str:
    """The machines ``names`` as one Graphviz ``digraph``, a cluster each.

    Example::

        >>> '"run:created" -> "run:queued" [label="submit"];' in machines_dot(["run"])
        True
    """
    return _dot([_dot_machine(m) for m in MACHINES if m in names])


def workflow_dot(wf: Workflow) -> str:
    """Workflow ``wf`` as one Graphviz ``digraph`` (see :func:`workflow_mermaid`)."""
    return _dot([_dot_workflow(wf)])


def render_diagram(*, workflow: Workflow | None, fmt: str, machines: Sequence[str]) -> str:
    """The whole ``ledgerflow diagram`` output: the workflow (if any), then the machines.

    Example::

        text = render_diagram(workflow=None, fmt="mermaid", machines=["run", "task"])
    """
    unknown = [m for m in machines if m not in MACHINES]
    if unknown or fmt not in FORMATS:
        raise ValueError(f"Unknown machine(s) {unknown} or format {fmt!r}.")
    if fmt == "dot":
        sections = [_dot_workflow(workflow)] if workflow is not None else []
        return _dot(sections + [_dot_machine(m) for m in MACHINES if m in machines])
    documents = [workflow_mermaid(workflow)] if workflow is not None else []
    if machines:
        documents.append(machines_mermaid(machines))
    return "\n".join(documents)


# -- the command -------------------------------------------------------------


def register(group: click.Group) -> None:
    """Add ``diagram`` to ``group``."""
    group.add_command(diagram)


@click.command()
@click.option("--workflow", default=None, callback=workflow_ref,
              help="MODULE:WORKFLOW whose goal, planner and agents (with their input and output "
                   "contracts) to draw.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid",
              show_default=True, help="Mermaid (stateDiagram-v2 / flowchart) or Graphviz dot.")
@click.option("--machine", type=click.Choice([*MACHINES, "all"]), default=None,
              help="Which state machine to draw (default: all, or none with --workflow).")
@friendly
def diagram(*, workflow: str | None, fmt: str, machine: str | None) -> None:
    """Draw the run and task state machines, or a workflow's agents and contracts.

    The machines come from the transition table the runtime decides with.
    With --workflow, only the workflow is drawn unless --machine is given too;
    in Mermaid the two are then two diagrams, separated by a blank line. Reads
    no store.
    """
    wf = load_workflow(workflow) if workflow else None
    if machine is None:
        chosen: list[str] = [] if wf is not None else list(MACHINES)
    else:
        chosen = list(MACHINES) if machine == "all" else [machine]
    click.echo(render_diagram(workflow=wf, fmt=fmt, machines=chosen), nl=False)
