"""Properties of check_plan over random plans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ledgerflow.contracts import AgentContract, Plan, Task, check_plan


class Nothing(BaseModel):
    pass


AGENTS = {"noop": AgentContract("noop", Nothing, Nothing)}


@st.composite
def acyclic_needs(draw: st.DrawFn) -> list[list[int]]:
    """For task i, the earlier tasks it needs: any such plan is acyclic."""
    size = draw(st.integers(min_value=1, max_value=12))
    return [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=i)) if i else set())
        for i in range(size)
    ]


def _plan(needs: list[list[int]], order: list[int]) -> Plan:
    # Tasks listed in a shuffled order, so plan order is not the topological order.
    return Plan(
        tasks=[Task(id=f"t{i}", agent="noop", needs=[f"t{j}" for j in needs[i]]) for i in order]
    )


def _reaches(needs: list[list[int]], start: int) -> set[int]:
    seen: set[int] = set()
    stack = list(needs[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(needs[node])
    return seen


@settings(max_examples=200, deadline=None)
@given(data=st.data(), needs=acyclic_needs())
def test_acyclic_plans_have_no_cycle_and_a_back_edge_makes_exactly_one(
    data: st.DataObject, needs: list[list[int]]
) -> None:
    order = data.draw(st.permutations(range(len(needs))))
    assert check_plan(_plan(needs, order), Nothing, AGENTS) == []

    pairs = [(i, j) for i in range(len(needs)) for j in sorted(_reaches(needs, i))]
    pairs += [(i, i) for i in range(len(needs))]  # a task needing itself
    upper, lower = data.draw(st.sampled_from(pairs))
    # upper already depends on lower; make lower need upper as well.
    cyclic = [list(n) for n in needs]
    cyclic[lower].append(upper)
    problems = check_plan(_plan(cyclic, order), Nothing, AGENTS)
    assert [p.code for p in problems] == ["dependency_cycle"]
    message = problems[0].message
    assert f"t{upper} -> " in message or f" -> t{upper}" in message
    assert f"t{lower} -> " in message
    assert problems == check_plan(_plan(cyclic, order), Nothing, AGENTS)
