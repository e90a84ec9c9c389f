"""``ledgerflow diagram``: the machines drawn from the one transition table, every
transition exactly once in both formats; a workflow's agents with their contracts;
deterministic output; a workflow that cannot be imported is one line, exit 1."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from click.testing import CliRunner, Result
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, Budget, RetryPolicy, Workflow
from ledgerflow.machines.fsm import RUN_TABLE, TASK_TABLE, RunStatus, TaskStatus
from ledgerflow.replay.cli import main
from ledgerflow.replay.diagram import render_diagram, type_name

# -- a fixture workflow (imported by the CLI as test_replay_diagram:WF) ---------


class Goal(BaseModel):
    city: str
    nights: int = 1


class Hotel(BaseModel):
    name: str
    stars: int


class SearchInput(BaseModel):
    city: str
    max_results: int


class SearchOutput(BaseModel):
    hotels: list[Hotel]
    note: str | None = None
    confidence: float


class HoldInput(BaseModel):
    hotel_name: str


class HoldOutput(BaseModel):
    reference: str


WF = Workflow("diagram-fixture", goal=Goal, budget=Budget(max_retries=4, max_cost=1.5),
              max_concurrency=3)


@WF.agent(input=SearchInput, output=SearchOutput, retry=RetryPolicy(max_attempts=4),
          min_confidence=0.6, max_concurrent=2, per_minute=30, timeout_s=12)
async def hotel_search(inp: SearchInput, ctx: AgentContext) -> SearchOutput:
    return SearchOutput(hotels=[], confidence=1.0)


@WF.agent(input=HoldInput, output=HoldOutput, side_effect=True)
async def place_hold(inp: HoldInput, ctx: AgentContext) -> HoldOutput:
    return HoldOutput(reference="H-1")


@WF.planner
async def plan_stay(goal: Goal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="s", agent="hotel_search", inputs={"city": "$goal.city",
                                                                  "max_results": 3})])


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, ["diagram", *args], catch_exceptions=False)


def expected(machine: str) -> Counter[tuple[str, str, str, str]]:
    """Every transition of fsm's compiled table: (machine, source, trigger, destination)."""
    table = RUN_TABLE if machine == "run" else TASK_TABLE
    return Counter((machine, src.value, trig, dst.value)
                   for (src, trig), dst in table.items())


ALL = expected("run") + expected("task")

# -- a structural reading of the Mermaid output ---------------------------------

STATE_DECL = re.compile(r'^\s*state "([a-z_]+)" as ([a-z]+)_([a-z_]+)$')
STATE_EDGE = re.compile(r"^\s*([a-z]+)_([a-z_]+) --> ([a-z]+)_([a-z_]+) : ([a-z_]+)$")


def mermaid_documents(text: str) -> list[list[str]]:
    """The documents of the output (a blank line between two), each as its lines."""
    docs: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            docs[-1].append(line)
        elif docs[-1]:
            docs.append([])
    return [doc for doc in docs if doc]


def check_mermaid(doc: list[str]) -> None:
    """Header, balanced blocks and brackets, no line (node or edge) twice."""
    assert doc[0] in ("stateDiagram-v2", "flowchart LR"), doc[0]
    opened = [ln for ln in doc if ln.rstrip().endswith("{") or ln.strip().startswith("subgraph ")]
    closed = [ln for ln in doc if ln.strip() in ("}", "end")]
    assert len(opened) == len(closed), doc
    depth = 0
    for line in doc:
        depth += line.rstrip().endswith("{") or line.strip().startswith("subgraph ")
        depth -= line.strip() in ("}", "end")
        assert depth >= 0, line
        unquoted = re.sub(r'"[^"]*"', '""', line)
        assert line.count('"') % 2 == 0, line
        for pair in ("[]", "()"):
            assert unquoted.count(pair[0]) == unquoted.count(pair[1]), line
    body = [ln.strip() for ln in doc[1:] if ln.strip() not in ("}", "end")]
    dupes = [ln for ln, n in Counter(body).items() if n > 1]
    assert not dupes, dupes


def mermaid_transitions(text: str) -> Counter[tuple[str, str, str, str]]:
    names: dict[str, str] = {}
    found: Counter[tuple[str, str, str, str]] = Counter()
    for line in text.splitlines():
        if m := STATE_DECL.match(line):
            assert m.group(1) == m.group(3), line
            names[f"{m.group(2)}_{m.group(3)}"] = m.group(1)
        elif m := STATE_EDGE.match(line):
            src, dst = f"{m.group(1)}_{m.group(2)}", f"{m.group(3)}_{m.group(4)}"
            assert m.group(1) == m.group(3), line  # no edge between machines
            found[(m.group(1), names[src], m.group(5), names[dst])] += 1
    return found


DOT_EDGE = re.compile(r'^\s*"(run|task):([a-z_]+)" -> "(run|task):([a-z_]+)" '
                      r'\[label="([a-z_]+)"\];$')


def dot_transitions(text: str) -> Counter[tuple[str, str, str, str]]:
    found: Counter[tuple[str, str, str, str]] = Counter()
    for line in text.splitlines():
        if m := DOT_EDGE.match(line):
            assert m.group(1) == m.group(3), line
            found[(m.group(1), m.group(2), m.group(5), m.group(4))] += 1
    return found


def check_dot(text: str) -> None:
    lines = text.splitlines()
    assert lines[0] == "digraph ledgerflow {"
    assert lines[-1] == "}"
    assert text.count("{") == text.count("}")
    edges = [ln.strip() for ln in lines if " -> " in ln]
    assert len(edges) == len(set(edges))
    for line in lines:
        assert len(re.findall(r'(?<!\\)"', line)) % 2 == 0, line


# -- the machines -----------------------------------------------------------------


def test_every_transition_appears_exactly_once_in_mermaid() -> None:
    result = invoke()
    assert result.exit_code == 0, result.output
    (doc,) = mermaid_documents(result.output)
    check_mermaid(doc)
    assert mermaid_transitions(result.output) == ALL
    # The start and the terminal states are marked, from the enums' own flags.
    assert "    [*] --> run_created" in result.output.replace("        ", "    ")
    for status in (*RunStatus, *TaskStatus):
        marker = f"{type(status).__name__[:-6].lower()}_{status.value} --> [*]"
        assert (marker in result.output) == status.terminal, status


def test_every_transition_appears_exactly_once_in_dot() -> None:
    result = invoke("--format", "dot")
    assert result.exit_code == 0, result.output
    check_dot(result.output)
    assert dot_transitions(result.output) == ALL
    assert 'subgraph "cluster_run"' in result.output
    assert 'subgraph "cluster_task"' in result.output


@pytest.mark.parametrize("machine", ["run", "task"])
@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_one_machine_alone(machine: str, fmt: str) -> None:
    result = invoke("--machine", machine, "--format", fmt)
    assert result.exit_code == 0, result.output
    read = mermaid_transitions if fmt == "mermaid" else dot_transitions
    assert read(result.output) == expected(machine)
    if fmt == "mermaid":
        (doc,) = mermaid_documents(result.output)
        check_mermaid(doc)
        assert f"state {machine} {{" not in result.output  # no wrapper for one machine


def test_the_output_is_deterministic() -> None:
    first = [invoke("--format", f, "--workflow", "test_replay_diagram:WF", "--machine", "all")
             .output for f in ("mermaid", "dot")]
    again = [invoke("--format", f, "--workflow", "test_replay_diagram:WF", "--machine", "all")
             .output for f in ("mermaid", "dot")]
    assert first == again
    # Transitions sorted: by the source's place in the run's life, then trigger.
    order = {s.value: i for i, s in enumerate(RunStatus)}
    rows = [(order[src], trig) for (_, src, trig, _) in
            [(m.group(1), m.group(2), m.group(5), m.group(4)) for m in
             (DOT_EDGE.match(ln) for ln in first[1].splitlines()) if m and m.group(1) == "run"]]
    assert rows == sorted(rows)


# -- a workflow ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_a_workflows_agents_contracts_and_limits_appear(fmt: str) -> None:
    result = invoke("--workflow", "test_replay_diagram:WF", "--format", fmt)
    assert result.exit_code == 0, result.output
    out = result.output
    if fmt == "mermaid":
        (doc,) = mermaid_documents(out)
        check_mermaid(doc)
        assert doc[0] == "flowchart LR"
        assert "stateDiagram" not in out  # with --workflow, no machines unless asked
    else:
        check_dot(out)
        assert "cluster_run" not in out
    for text in (
        "agent hotel_search", "agent place_hold", "input SearchInput", "output SearchOutput",
        "city: str", "max_results: int", "hotels: list[Hotel]", "note: str | None (optional)",
        "confidence: float", "input HoldInput", "hotel_name: str", "output HoldOutput",
        "reference: str", "retry: 4 attempt(s)", "timeout: 12 s", "min_confidence: 0.6",
        "max_concurrent: 2", "per_minute: 30",
        "side_effect, not idempotent (escalates instead of repeating)",
        "planner plan_stay", "goal Goal", "nights: int (optional)", "max_concurrency: 3",
        "budget: max_retries 4, max_cost 1.5",
    ):
        assert text in out, text
    # Agents in name order.
    assert out.index("agent hotel_search") < out.index("agent place_hold")


def test_a_workflow_and_the_machines_in_mermaid_are_two_documents() -> None:
    result = invoke("--workflow", "test_replay_diagram:WF", "--machine", "task")
    assert result.exit_code == 0, result.output
    flow, states = mermaid_documents(result.output)
    check_mermaid(flow)
    check_mermaid(states)
    assert flow[0] == "flowchart LR"
    assert states[0] == "stateDiagram-v2"
    assert mermaid_transitions(result.output) == expected("task")


def test_the_bundled_travel_workflow_draws() -> None:
    result = invoke("--workflow", "ledgerflow.examples.travel:wf", "--machine", "all",
                    "--format", "dot")
    assert result.exit_code == 0, result.output
    check_dot(result.output)
    assert "on_escalation" in result.output
    assert dot_transitions(result.output) == ALL


def test_labels_are_escaped() -> None:
    class Odd(BaseModel):
        quoted: dict[str, list[int]]

    wf = Workflow("diagram-escape", goal=Odd)

    @wf.agent(input=Odd, output=Odd, name='we"ird<name>#1')
    async def odd(inp: Odd, ctx: AgentContext) -> Odd:
        return inp

    mermaid = render_diagram(workflow=wf, fmt="mermaid", machines=[])
    (doc,) = mermaid_documents(mermaid)
    check_mermaid(doc)
    assert "we#quot;ird#lt;name#gt;#35;1" in mermaid
    assert "<name>" not in mermaid
    dot = render_diagram(workflow=wf, fmt="dot", machines=[])
    check_dot(dot)
    assert 'label="agent we\\"ird<name>#1"' in dot


def test_type_names_read_as_written() -> None:
    assert type_name(list[Hotel]) == "list[Hotel]"
    assert type_name(str | None) == "str | None"
    assert type_name(dict[str, list[int]]) == "dict[str, list[int]]"


# -- errors ------------------------------------------------------------------------------


def test_a_workflow_that_does_not_import_is_one_line_exit_1() -> None:
    result = invoke("--workflow", "nope:x")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line == "Error: Cannot import module 'nope': No module named 'nope'."


def test_a_missing_attribute_is_one_line_exit_1() -> None:
    result = invoke("--workflow", "test_replay_diagram:nothing")
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: Module 'test_replay_diagram' has no attribute 'nothing'")


def test_a_malformed_workflow_is_a_usage_error() -> None:
    result = invoke("--workflow", "not a ref")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_diagram_is_listed_in_help() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "diagram" in result.output
