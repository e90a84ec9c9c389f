"""``replay --step``: walk a run's decisions one at a time.

In a terminal it waits for a key after each step: ``n`` (or Enter) next,
``b`` back, ``j SEQ`` jump, ``f`` next failure or escalation, ``q`` quit.
When stdin is not a terminal (a pipe, a test, CI) it prints every step from
the start seq and exits, so the same command works in scripts.

An event that records a journaled step (a model or tool call the agent made
with ``ctx.step``) also says what that step did, under its task's attempt:
a ``step:`` line (``"step"`` object with ``--json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from ledgerflow.eventstore import Envelope
from ledgerflow.machines import steps_of
from ledgerflow.replay.step_view import step_document, step_notes, views_by_row
from ledgerflow.replay.steps import Step, is_trouble, walk

__all__ = ["format_step", "step_through"]

HELP = "[n]ext  [b]ack  [j SEQ] jump  [f] next failure/escalation  [q]uit"


def format_step(step: Step, total: int, note: str = "") -> str:
    """One step as text; ``note`` is the journaled step it records, if any."""
    lines = [
        f"seq {step.seq}/{total}  {step.at.strftime('%H:%M:%S.%f')[:-3]}  {step.type}",
        f"  machine: {step.machine}   trigger: {step.trigger or '-'}   {step.move}",
        f"  reason:  {step.reason or '-'}",
    ]
    if note:
        lines.append(f"  step:    {note}")
    if step.changes:
        lines.append("  changes: " + "\n           ".join(step.changes))
    return "\n".join(lines)


def step_through(
    run_id: str,
    envelopes: Sequence[Envelope],
    *,
    start: int = 1,
    as_json: bool = False,
    stdin: TextIO | None = None,
    write: Callable[[str], None] | None = None,
) -> None:
    """Show the steps of a run, interactively when stdin is a terminal."""
    stdin = stdin or sys.stdin
    out = write or _print
    steps = list(walk(run_id, envelopes))
    total = len(steps)
    journaled = steps_of((step.seq, step.event) for step in steps)
    notes = step_notes(steps, journaled)
    views = views_by_row(steps, journaled)

    def render(step: Step) -> str:
        if not as_json:
            return format_step(step, total, notes.get(step.seq, ""))
        doc = step.to_dict()
        if step.seq in views:
            doc["step"] = step_document(views[step.seq])
        return json.dumps(doc)

    index = max(0, min(start, total) - 1)
    if not stdin.isatty():
        for step in steps[index:]:
            out(render(step))
        return
    out(HELP)
    while True:
        out(render(steps[index]))
        try:
            answer = _ask(stdin)
        except EOFError:
            return
        command, _, arg = answer.strip().partition(" ")
        if command in ("", "n"):
            if index + 1 >= total:
                out("(last event)")
            else:
                index += 1
        elif command == "b":
            index = max(0, index - 1)
        elif command == "j":
            if not arg.strip().isdigit() or not 1 <= int(arg) <= total:
                out(f"jump needs a seq from 1 to {total}, e.g. 'j 12'")
                continue
            index = int(arg) - 1
        elif command == "f":
            nxt = next((i for i in range(index + 1, total) if is_trouble(steps[i])), None)
            if nxt is None:
                out("(no failure or escalation after this one)")
            else:
                index = nxt
        elif command == "q":
            return
        else:
            out(HELP)


def _print(text: str) -> None:
    print(text, flush=True)


def _ask(stdin: TextIO) -> str:
    sys.stdout.write("step> ")
    sys.stdout.flush()
    line = stdin.readline()
    if not line:
        raise EOFError
    return line
