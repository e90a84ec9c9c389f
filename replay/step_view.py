"""A run's journaled steps as the audit commands show them: under their task's attempt.

``show``, ``log`` and ``replay --step`` read steps through
:func:`ledgerflow.machines.steps_of` (the one place that joins a side
effect's start with its outcome) and word them here, so the three commands
say the same thing about a step: its index, name, kind (``llm``, ``tool``,
``step``), the model or tool it called, its tokens, cost and duration, and
its outcome (:func:`outcome`). A request or result is cut to a short summary
(a prompt can be pages long); ``log --format jsonl`` keeps them whole.

Example::

    views = steps_of((row.seq, row.event) for row in decision_log(envelopes))
    for view in views:
        print(step_line(view))
    # attempt 1 step 0 model.chat (llm fake-mini): ok; 50 tokens, cost 0.002, 0.52 ms; ...
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from ledgerflow.machines import Event, StepView, step_totals
from ledgerflow.machines.events import StepRecorded, StepStarted
from ledgerflow.replay.render import StepCells, summarize

__all__ = [
    "OUTCOME_UNKNOWN",
    "STEP_KEYS",
    "SUMMARY_CHARS",
    "by_attempt",
    "called",
    "outcome",
    "started_line",
    "step_cells",
    "step_document",
    "step_line",
    "step_notes",
    "totals_line",
    "views_by_row",
]

#: What a side-effecting step that started and recorded nothing is shown as:
#: the process died (or the attempt timed out) while it ran, so nobody knows.
OUTCOME_UNKNOWN = "outcome unknown"
#: How much of a request or result a table or a line shows.
SUMMARY_CHARS = 40
#: The keys of one step in ``show --json`` and ``replay --json`` (stable, like
#: the other keys of those documents).
STEP_KEYS = ("task_id", "attempt", "index", "name", "kind", "model", "tool", "tokens", "cost",
             "duration_ms", "outcome", "error_type", "message", "side_effect", "seq",
             "request_summary", "result_summary")


class _LoggedEvent(Protocol):
    """A row of the decision log (:class:`~ledgerflow.replay.timeline.LogRow`, a ``Step``)."""

    @property
    def seq(self) -> int: ...

    @property
    def event(self) -> Event: ...


def views_by_row(rows: Iterable[_LoggedEvent], steps: Sequence[StepView]) -> dict[int, StepView]:
    """The step each step event of ``rows`` records, by the event's seq.

    A side effect's :class:`StepStarted` and the :class:`StepRecorded` of its
    outcome both map to the one joined view.
    """
    if not steps:
        return {}
    by_seq = {view.seq: view for view in steps}
    by_key = {(view.task_id, view.attempt, view.index): view for view in steps}
    found: dict[int, StepView] = {}
    for row in rows:
        event = row.event
        if isinstance(event, StepStarted):
            view = by_key.get((event.task_id, event.attempt, event.index))
        else:
            view = by_seq.get(row.seq) if isinstance(event, StepRecorded) else None
        if view is not None:
            found[row.seq] = view
    return found


def step_notes(rows: Sequence[_LoggedEvent], steps: Sequence[StepView]) -> dict[int, str]:
    """A one-line summary (:func:`step_line`) for each step event of ``rows``, by seq."""
    views = views_by_row(rows, steps)
    notes: dict[int, str] = {}
    for row in rows:
        view = views.get(row.seq)
        if view is None:
            continue
        started = row.event
        # A start whose outcome came later points there; one with none is the whole story.
        notes[row.seq] = (started_line(started, view) if isinstance(started, StepStarted)
                          and view.seq != row.seq else step_line(view))
    return notes


def by_attempt(
    views: Iterable[StepView], task_order: Sequence[str] = ()
) -> list[tuple[str, int, list[StepView]]]:
    """The steps grouped under their task's attempt: ``[(task_id, attempt, steps)]``.

    Tasks come in ``task_order`` (the plan's), then any other in log order;
    attempts in order; steps by index (a nested step's index follows its
    parent's, though it is recorded first), then log order.
    """
    groups: dict[tuple[str, int], list[StepView]] = {}
    for view in views:
        groups.setdefault((view.task_id, view.attempt), []).append(view)
    rank = {task_id: at for at, task_id in enumerate(task_order)}
    first_seen: dict[str, int] = {}
    for at, (task_id, _) in enumerate(groups):
        first_seen.setdefault(task_id, at)
    ordered = sorted(groups, key=lambda key: (rank.get(key[0], len(rank)),
                                              first_seen[key[0]], key[1]))
    return [(task_id, attempt, sorted(groups[(task_id, attempt)],
                                      key=lambda v: (v.index, v.seq)))
            for task_id, attempt in ordered]


def called(view: StepView) -> str:
    """The model or tool the step called, as its function reported it; ``""`` if it did not."""
    return str(view.detail.get("model") or view.detail.get("tool") or "")


def outcome(view: StepView) -> str:
    """``ok``, the error type, :data:`OUTCOME_UNKNOWN`, or where a served step came from.

    Example::

        >>> outcome(StepView("t", 1, 0, "charge", None, "h", 9, side_effect=True,
        ...                  outcome_unknown=True))
        'outcome unknown'
    """
    if view.outcome_unknown:
        return OUTCOME_UNKNOWN
    result = view.error_type or "ok"
    source = view.detail.get("served_from")
    if source is None and "served_from_attempt" in view.detail:
        source = f"attempt {view.detail['served_from_attempt']}"
    if source is not None:
        return f"served from {source}" + ("" if result == "ok" else f": {result}")
    return result


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _kind_and_call(view: StepView) -> str:
    what = called(view)
    return f"{view.kind} {what}" if what else view.kind


def _usage(view: StepView) -> str:
    return f"{view.tokens} tokens, cost {view.cost:.4g}, {view.duration_ms:.3g} ms"


def step_line(view: StepView, *, limit: int = SUMMARY_CHARS) -> str:
    """The step on one line: where, what, outcome, usage, and a cut request and result.

    Example::

        attempt 1 step 0 model.chat (llm fake-mini): ok; 50 tokens, cost 0.002, 0.52 ms;
        request {"args":["Price a trip to Lisbon."],"kwargs":{}}; result {"price":120.0}
    """
    head = (f"attempt {view.attempt} step {view.index} {view.name} ({_kind_and_call(view)}): "
            f"{outcome(view)}")
    if view.outcome_unknown:
        return (f"{head}; the side effect started and recorded no result; "
                f"request {summarize(view.request, limit)}")
    tail = (f"error {_cut(view.message, limit)}" if view.error_type
            else f"result {summarize(view.result, limit)}")
    return f"{head}; {_usage(view)}; request {summarize(view.request, limit)}; {tail}"


def started_line(event: StepStarted, view: StepView) -> str:
    """A side effect's start whose outcome a later event recorded (at ``view.seq``)."""
    return (f"attempt {event.attempt} step {event.index} {event.name}: side effect started; "
            f"outcome at seq {view.seq}")


def step_cells(groups: Sequence[tuple[str, int, list[StepView]]], *,
               limit: int = SUMMARY_CHARS) -> list[StepCells]:
    """The rows of the steps table (:func:`~ledgerflow.replay.render.steps_table`).

    ``groups`` is :func:`by_attempt`'s; a failed step shows its error's
    message where a result would be.
    """
    rows: list[StepCells] = []
    for task_id, attempt, views in groups:
        for at, view in enumerate(views):
            if view.outcome_unknown:
                usage = ("", "", "")
                result = "(no result recorded)"
            else:
                usage = (str(view.tokens), f"{view.cost:.4g}", f"{view.duration_ms:.3g}")
                result = (_cut(view.message, limit) if view.error_type
                          else summarize(view.result, limit))
            rows.append(StepCells(
                task=task_id if at == 0 else "", attempt=str(attempt) if at == 0 else "",
                number=str(view.index), step=view.name, kind=view.kind, called=called(view),
                tokens=usage[0], cost=usage[1], ms=usage[2], outcome=outcome(view),
                request=summarize(view.request, limit), result=result))
    return rows


def step_document(view: StepView, *, limit: int = SUMMARY_CHARS * 2) -> dict[str, Any]:
    """One step as ``show --json`` and ``replay --json`` list it (keys: :data:`STEP_KEYS`)."""
    return {
        "task_id": view.task_id,
        "attempt": view.attempt,
        "index": view.index,
        "name": view.name,
        "kind": view.kind,
        "model": view.detail.get("model"),
        "tool": view.detail.get("tool"),
        "tokens": view.tokens,
        "cost": view.cost,
        "duration_ms": view.duration_ms,
        "outcome": outcome(view),
        "error_type": view.error_type,
        "message": view.message,
        "side_effect": view.side_effect,
        "seq": view.seq,
        "request_summary": summarize(view.request, limit),
        "result_summary": summarize(view.result, limit),
    }


def _plural(count: int, one: str) -> str:
    return f"{count} {one}" + ("" if count == 1 else "s")


def totals_line(views: Iterable[StepView]) -> str:
    """The run's steps counted: ``steps: 5 (2 model calls, 3 tool calls), tokens 100, cost 0.004``.

    Example::

        >>> totals_line([])
        'steps: 0 (0 model calls, 0 tool calls), tokens 0, cost 0'
    """
    totals = step_totals(views)
    return (f"steps: {totals['steps']} ({_plural(totals['llm_calls'], 'model call')}, "
            f"{_plural(totals['tool_calls'], 'tool call')}), tokens {totals['tokens']}, "
            f"cost {totals['cost']:.4g}")
