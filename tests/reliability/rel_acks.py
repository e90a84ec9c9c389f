"""The side channel of the kill -9 stories: every append tried and every append acknowledged.

:class:`AckingStore` wraps the store a child process drives runs with. Before
each ``append`` it writes a *try* line (run, expected seq, a digest of each
event's data); once ``append`` returned, an *ack* line (the seqs and chain
hashes the store gave back), written and fsynced before anything the batch
describes can start. A process killed at any moment leaves every ack it got
on disk, and the try of the append it was in.

:func:`check_acks` then holds the final logs against those lines:

- every acknowledged event is in the log, at its seq, with its hash and data
  (0 lost acknowledged events);
- an append never acknowledged (in flight at the kill, or refused) is in the
  log whole or not at all: the number of its events found at its place, from
  the first, is 0 or all of them (a batch is all or nothing, and no log ends
  inside one).

Example::

    store = AckingStore(inner, ack_dir / f"{os.getpid()}.jsonl", effect_tasks={"pay"})
    ...  # drive runs, get killed
    figures = await check_acks(store_for_reading, ack_dir)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rel_killpoints import armed, reach, reach_soon

from ledgerflow.eventstore import Envelope, EventStore, NewEvent

__all__ = ["MID_BATCH", "AckFigures", "AckingStore", "check_acks"]

#: A batch at least this large is "mid-batch" material: many tasks decided at once.
MID_BATCH = 4


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


class AckingStore:
    """An event store whose appends are written to a side channel (see the module docstring).

    Everything but ``append`` goes to the wrapped store unchanged.
    """

    def __init__(self, inner: EventStore, path: Path, *, effect_tasks: frozenset[str]) -> None:
        self.inner = inner
        self.effect_tasks = effect_tasks
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._tries = 0

    def _line(self, doc: dict[str, Any], *, sync: bool) -> None:
        # One write(2) per line: what was written survives a SIGKILL of this process;
        # the fsync of acks is for the record (the brief asks a power-loss-proof channel).
        os.write(self._fd, (json.dumps(doc) + "\n").encode())
        if sync:
            os.fsync(self._fd)

    async def append(self, run_id: str, events: Sequence[NewEvent], expected_seq: int,
                     **options: Any) -> list[Envelope]:
        self._tries += 1
        tid = f"{os.getpid()}:{self._tries}"
        self._line({"k": "try", "id": tid, "run": run_id, "expected": expected_seq,
                    "d": [_digest(e.data) for e in events]}, sync=False)
        if len(events) >= MID_BATCH:
            reach_soon("mid_batch")  # a timer: the kill lands inside this append, or just after
        try:
            envelopes = await self.inner.append(run_id, events, expected_seq, **options)
        except BaseException as exc:
            # Not an acknowledgement: a cancelled append may still have committed.
            self._line({"k": "err", "id": tid, "error": type(exc).__name__}, sync=False)
            raise
        self._line({"k": "ack", "id": tid, "run": run_id,
                    "seqs": [e.seq for e in envelopes],
                    "hashes": [e.hash for e in envelopes]}, sync=True)
        if armed("append_then_dispatch") and self._dispatches_an_effect(events):
            reach("append_then_dispatch")  # durable dispatch, the agent not called yet
        return envelopes

    def _dispatches_an_effect(self, events: Sequence[NewEvent]) -> bool:
        return any(e.type == "TaskDispatched"
                   and msgspec.json.decode(e.data).get("task_id") in self.effect_tasks
                   for e in events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class AckFigures:
    """What :func:`check_acks` checked."""

    acknowledged_batches: int = 0
    acknowledged_events: int = 0
    #: Appends never acknowledged, found whole in the log / found not at all.
    unacknowledged_whole: int = 0
    unacknowledged_absent: int = 0
    problems: list[str] = field(default_factory=list)


def _read_lines(ack_dir: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(ack_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            # A kill between write(2)s never tears a line, but say so if one was.
            try:
                docs.append(json.loads(line))
            except json.JSONDecodeError:
                docs.append({"k": "torn", "line": line, "file": path.name})
    return docs


async def check_acks(store: EventStore, ack_dir: Path) -> AckFigures:
    """Hold every run's final log against the side channel; the figures and any problems."""
    docs = _read_lines(ack_dir)
    figures = AckFigures()
    figures.problems += [f"torn side-channel line {d}" for d in docs if d["k"] == "torn"]
    tries = {d["id"]: d for d in docs if d["k"] == "try"}
    acks = {d["id"]: d for d in docs if d["k"] == "ack"}
    logs: dict[str, list[Envelope]] = {}
    for run_id in sorted({d["run"] for d in tries.values()}):
        logs[run_id] = await store.read_all(run_id)
    for tid, tried in tries.items():
        log = logs[tried["run"]]
        start = tried["expected"]
        wanted: list[str] = tried["d"]
        found = [_digest(e.data) for e in log[start:start + len(wanted)]]
        whole = 0
        while whole < len(found) and found[whole] == wanted[whole]:
            whole += 1
        ack = acks.get(tid)
        if ack is not None:
            figures.acknowledged_batches += 1
            figures.acknowledged_events += len(ack["seqs"])
            got = [(e.seq, e.hash) for e in log[start:start + len(wanted)]]
            if got != list(zip(ack["seqs"], ack["hashes"], strict=True)) or whole != len(wanted):
                figures.problems.append(
                    f"run {tried['run']}: acknowledged seqs {ack['seqs']} are not in its log "
                    f"as acknowledged (log has {len(log)} events; {whole} of them match)")
        elif whole == len(wanted):
            figures.unacknowledged_whole += 1
        elif whole == 0:
            figures.unacknowledged_absent += 1
        else:
            figures.problems.append(
                f"run {tried['run']}: an append of {len(wanted)} events at seq {start + 1} "
                f"is in its log only in part ({whole} of them)")
    return figures
