"""Recorded runs as test fixtures: answer every journaled step from an earlier run.

``Orchestrator(store, recording=rec)`` runs a workflow offline: each
``ctx.step`` is answered by the recorded step with the same name and request
hash (the request as the log holds it), none is called, and the answer is
recorded in the new run with its original usage (so a budget policy sees the
same costs). A request the recording does not hold fails the step with
:class:`~ledgerflow.machines.errors.RecordingMissError`, which shows the
difference from the closest recorded request of that name; every miss is
also kept in :attr:`Recording.misses` for :meth:`Recording.check`.

This is how a prompt, parsing or policy change is tested against last
month's real model answers without paying for them again.

Example::

    async with open_store("prod-copy.db") as store:
        rec = await Recording.from_run(store, "r-2026-11-03-0042")
        run = await Orchestrator(store, recording=rec).start(wf, goal)
        rec.check()   # raises the first miss, if a request was not in the recording
"""

from __future__ import annotations

import difflib
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.errors import RecordingMissError, RunNotFoundError
from ledgerflow.machines.step_log import StepView, steps_of

__all__ = ["Recording"]

#: Lines of a request difference shown in a miss (a long prompt differs in one line).
_DIFF_LINES = 60


def _pretty(request: Any) -> list[str]:
    return json.dumps(request, indent=1, sort_keys=True, ensure_ascii=False).splitlines()


class Recording:
    """The answered steps of recorded runs, found by name and request hash.

    A request recorded several times is answered in the order recorded, the
    last answer again once they are used up.
    """

    def __init__(self, steps: list[StepView], *, source: str) -> None:
        self.source = source
        self._answers: dict[tuple[str, str], list[ev.StepRecorded]] = defaultdict(list)
        self._used: dict[tuple[str, str], int] = defaultdict(int)
        self._requests: dict[str, list[Any]] = defaultdict(list)
        for view in steps:
            if view.outcome_unknown:
                continue
            self._answers[(view.name, view.request_hash)].append(ev.StepRecorded(
                task_id=view.task_id, attempt=view.attempt, index=view.index, name=view.name,
                request=view.request, request_hash=view.request_hash, result=view.result,
                error_type=view.error_type, message=view.message, tokens=view.tokens,
                cost=view.cost, duration_ms=view.duration_ms, detail=view.detail,
                side_effect=view.side_effect))
            self._requests[view.name].append(view.request)
        #: Every request asked for that the recording did not hold, in order.
        self.misses: list[RecordingMissError] = []

    @classmethod
    async def from_run(cls, store: EventStore, run_id: str) -> Recording:
        """The steps of run ``run_id`` in ``store``."""
        log = [(env.seq, ev.decode_logged(env.data, env.seq, run_id))
               async for env in store.read(run_id)]
        if not log:
            raise RunNotFoundError(run_id)
        return cls.from_log(run_id, log)

    @classmethod
    def from_log(cls, run_id: str, log: Iterable[tuple[int, ev.Event]]) -> Recording:
        """The steps of run ``run_id`` from its decoded log (``(seq, event)`` pairs)."""
        return cls(steps_of(log), source=f"run:{run_id}")

    def __len__(self) -> int:
        return sum(len(answers) for answers in self._answers.values())

    def answer(self, name: str, digest: str, request: Any) -> ev.StepRecorded:
        """The recorded answer to this request; :class:`RecordingMissError` if there is none."""
        key = (name, digest)
        answers = self._answers.get(key)
        if not answers:
            miss = RecordingMissError(name, self.difference(name, request),
                                      recorded_names=list(self._requests))
            self.misses.append(miss)
            raise miss
        used = self._used[key]
        self._used[key] = used + 1
        return answers[min(used, len(answers) - 1)]

    def difference(self, name: str, request: Any) -> str:
        """A unified diff from the closest recorded request named ``name`` to ``request``."""
        asked = _pretty(request)
        best: list[str] | None = None
        best_ratio = -1.0
        for recorded in self._requests.get(name, []):
            lines = _pretty(recorded)
            ratio = difflib.SequenceMatcher(a=lines, b=asked, autojunk=False).ratio()
            if ratio > best_ratio:
                best, best_ratio = lines, ratio
        if best is None:
            return ""
        diff = list(difflib.unified_diff(best, asked, "recorded", "asked", n=2, lineterm=""))
        if len(diff) > _DIFF_LINES:
            diff = [*diff[:_DIFF_LINES], f"... ({len(diff) - _DIFF_LINES} more lines)"]
        return "\n".join(diff)

    def check(self) -> None:
        """Raise the first miss, if any request was not in the recording."""
        if self.misses:
            first = self.misses[0]
            if len(self.misses) > 1:
                first.add_note(f"{len(self.misses) - 1} more request(s) missed the recording.")
            raise first
