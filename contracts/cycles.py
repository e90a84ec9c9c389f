"""Dependency cycles in a plan, found deterministically.

One cycle is reported per strongly connected component: every task in a
component waits on every other, so one named cycle locates the knot, and a
plan that has gained one bad edge gets exactly one report. Iterative, so a
10,000-task chain does not hit the recursion limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Cycle", "find_cycles"]


@dataclass(frozen=True)
class Cycle:
    """``path`` is a shortest cycle from the knot's earliest task back to itself;
    ``members`` are all tasks caught in the knot, in plan order."""

    path: tuple[str, ...]
    members: tuple[str, ...]


def _components(nodes: Sequence[str], succ: Mapping[str, list[str]]) -> list[list[str]]:
    # Tarjan's algorithm with an explicit stack.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(succ[root]))]
        while work:
            node, edges = work[-1]
            descended = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ[nxt])))
                    descended = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
    return components


def _shortest_cycle(start: str, succ: Mapping[str, list[str]], within: set[str]) -> list[str]:
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in succ[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if nxt in within and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError("a strongly connected component always closes a cycle")


def find_cycles(nodes: Sequence[str], edges: Mapping[str, Sequence[str]]) -> list[Cycle]:
    """One :class:`Cycle` per knot, ordered by the plan position of its earliest task.

    ``edges[a]`` lists the tasks ``a`` needs; edges to unknown nodes are ignored.

    >>> find_cycles(["a", "b", "c"], {"a": ["b"], "b": ["c"], "c": ["a"]})
    [Cycle(path=('a', 'b', 'c', 'a'), members=('a', 'b', 'c'))]
    """
    position = {node: i for i, node in enumerate(nodes)}
    # Successors in plan order, so every traversal (and thus every report) is canonical.
    succ = {
        node: sorted({n for n in edges.get(node, ()) if n in position}, key=position.__getitem__)
        for node in nodes
    }
    found = []
    for component in _components(nodes, succ):
        start = min(component, key=position.__getitem__)
        if len(component) == 1 and start not in succ[start]:
            continue
        path = _shortest_cycle(start, succ, set(component))
        members = tuple(sorted(component, key=position.__getitem__))
        found.append(Cycle(path=tuple(path), members=members))
    found.sort(key=lambda cycle: position[cycle.path[0]])
    return found
