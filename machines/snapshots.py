"""State snapshots of long runs: the codec, the rule for when one is due, the writer.

A snapshot is a :class:`RunState` at one seq, stored beside the log
(:meth:`EventStore.put_snapshot`) so that a 100,000-event run resumes by
folding only the events after it. It is a cache, never a source of truth:

- it is used only while its ``hash`` is still the chain hash of the event at
  its seq (:func:`ledgerflow.machines.run_loading.load_run_state` reads that
  one envelope), so a log rewritten since makes it unusable;
- a snapshot of another :data:`SNAPSHOT_FORMAT`, of another shape of the
  state, or that fails to decode, is ignored: the loader folds from the start;
- ``ledgerflow verify`` refolds the log at each snapshot's seq and fails,
  naming the run, the seq and the field, when the two differ. That is the
  one check of an *edited* snapshot (its bytes are not hashed): a resume
  trusts a snapshot whose hash still matches, so a store writer who edits
  one is caught by ``verify``, not by ``resume``.

The encoding is msgspec JSON of the state's fields (arrays, no keys), the same
encoder the log uses, so a decoded snapshot holds what folding the log would
hold (a tuple an agent returned is the log's list here too), compressed with
zlib (level 1, on a thread: 4x fewer bytes to write). It names no module and no class:
what it records does not depend on where code lives. ``TaskState.plan_task``
(a cache of the plan's Task object) is left out, as a fold leaves it.

Bump :data:`SNAPSHOT_FORMAT` when :func:`evolve` changes what it folds into a
field (a renamed or added field changes :data:`SNAPSHOT_SHAPE` by itself).

Example::

    data = encode_snapshot(state)
    assert decode_snapshot(data) == state
    snapshot_due(last=1990, seq=2003, every=1000)   # True: seq 2000 was crossed
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import logging
import zlib
from collections.abc import Sequence
from operator import attrgetter
from typing import Any, Final

import msgspec
from msgspec.structs import astuple

from ledgerflow.contracts import Task
from ledgerflow.eventstore import Envelope, EventStore
from ledgerflow.machines.events import ResolutionRequested
from ledgerflow.machines.fsm import RunStatus, TaskStatus
from ledgerflow.machines.state import Escalation, RunState, TaskState
from ledgerflow.machines.step_events import StepRecorded, StepStarted

__all__ = [
    "DEFAULT_SNAPSHOT_EVERY",
    "DEFAULT_SNAPSHOT_KEEP",
    "SNAPSHOT_BYTES_PER_EVENT",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_SHAPE",
    "SnapshotDecodeError",
    "SnapshotWriter",
    "compress_snapshot",
    "decode_snapshot",
    "encode_snapshot",
    "snapshot_differences",
    "snapshot_due",
    "state_json",
]

log = logging.getLogger("ledgerflow")

#: The version of the encoding (stored in the ``format`` column).
SNAPSHOT_FORMAT: Final = 1
#: A snapshot every this many events by default (see benchmarks/long_run.py):
#: a resume folds at most about this many events plus the last batch.
DEFAULT_SNAPSHOT_EVERY: Final = 5000
#: A big state's snapshots are further apart: at most about this many bytes of
#: state (uncompressed) are encoded per event of the run.
SNAPSHOT_BYTES_PER_EVENT: Final = 512
#: The largest state a snapshot may inflate to (a bound on edited bytes).
MAX_STATE_BYTES: Final = 2**31
#: Snapshots kept per run (the latest ones): one to fall back on if the last is unusable.
DEFAULT_SNAPSHOT_KEEP: Final = 2


# -- the encoded shape: one Struct per dataclass, field for field, in order ---
# Arrays, not objects: a 20,000-task state is half the bytes without its keys.


class _Escalation(msgspec.Struct, array_like=True):
    task_id: str
    kind: str
    reason: str
    candidate: Any


class _Task(msgspec.Struct, array_like=True):
    id: str
    agent: str
    needs: tuple[str, ...]
    inputs: dict[str, Any]
    status: TaskStatus
    attempt: int
    granted_attempts: int
    budget_override: bool
    input: dict[str, Any] | None
    idempotency_key: str | None
    output: dict[str, Any] | None
    confidence: float | None
    last_error: str | None
    resolved_by: str | None
    unmet: int
    dependents: list[str]
    outstanding: bool
    plan_task: None  # always null: the fold rebuilds it on first need
    steps: dict[int, StepRecorded | StepStarted]
    done_side_effects: dict[str, StepRecorded]


class _Run(msgspec.Struct, array_like=True):
    run_id: str
    seq: int
    status: RunStatus
    workflow: str
    workflow_ref: str
    goal: dict[str, Any]
    started_at: str
    submitted_at: str
    key_base: str
    max_event_bytes: int | None
    max_concurrency: int
    max_retries: int | None
    max_cost: float | None
    deadline_s: float | None
    plan_problems: list[str]
    tasks: dict[str, _Task]
    retries_used: int
    tokens: int
    cost: float
    budget_exhausted: str | None
    escalations: dict[str, _Escalation]
    requested: dict[str, ResolutionRequested]
    reason: str
    forked_from: tuple[str, int] | None
    repeat_side_effects: bool
    planner_steps: dict[int, StepRecorded | StepStarted]
    counts: dict[TaskStatus, int]
    ready: dict[str, None]


_MIRRORS: Final = ((RunState, _Run), (TaskState, _Task), (Escalation, _Escalation))


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _shape() -> str:
    names = "|".join(f"{cls.__name__}:{','.join(_names(cls))}" for cls, _ in _MIRRORS)
    return hashlib.sha256(names.encode()).hexdigest()[:16]


#: The dataclasses' field names in order, hashed: a state of another shape is not decoded.
SNAPSHOT_SHAPE: Final = _shape()

# The fields of each dataclass as one tuple, in C (a getattr per field in Python
# would cost more than encoding them).
_RUN_FIELDS: Final = attrgetter(*_names(RunState))
_TASK_FIELDS: Final = attrgetter(*_names(TaskState))
_ESCALATION_FIELDS: Final = attrgetter(*_names(Escalation))
_TASKS_AT: Final = _names(RunState).index("tasks")
_ESCALATIONS_AT: Final = _names(RunState).index("escalations")


class _Snapshot(msgspec.Struct, array_like=True):
    shape: str
    state: _Run


def _plan_task_out(obj: Any) -> Any:
    # The one value of a state that is no log value: the plan's Task, a cache.
    if isinstance(obj, Task):
        return None
    raise NotImplementedError(f"a run state holds a {type(obj).__name__}, which no log holds")


_ENCODER: Final = msgspec.json.Encoder(enc_hook=_plan_task_out)
_DECODER: Final = msgspec.json.Decoder(_Snapshot)


class SnapshotDecodeError(ValueError):
    """A snapshot that cannot be used: another shape, or bytes that do not decode.

    Example::

        try:
            state = decode_snapshot(data)
        except SnapshotDecodeError as exc:
            print(exc)   # says why; the loader then folds from the start
    """


def encode_snapshot(state: RunState) -> bytes:
    """The state as snapshot bytes (format :data:`SNAPSHOT_FORMAT`: zlib-compressed JSON).

    Example::

        >>> decode_snapshot(encode_snapshot(RunState(run_id="r1"))).run_id
        'r1'
    """
    return compress_snapshot(state_json(state))


def state_json(state: RunState) -> bytes:
    """The JSON half of :func:`encode_snapshot`: the part that must run while the state is still.

    Example::

        >>> state_json(RunState(run_id="r1"))[:2]
        b'["'
    """
    fields = list(_RUN_FIELDS(state))
    fields[_TASKS_AT] = {tid: _TASK_FIELDS(t) for tid, t in state.tasks.items()}
    fields[_ESCALATIONS_AT] = {tid: _ESCALATION_FIELDS(e)
                               for tid, e in state.escalations.items()}
    return _ENCODER.encode((SNAPSHOT_SHAPE, fields))


def compress_snapshot(data: bytes) -> bytes:
    """:func:`state_json`'s bytes as stored (zlib level 1: a 20,000-task state, 3 MiB, is 4x
    smaller in ~40 ms; zlib lets go of the GIL, so the writer runs it on a thread)."""
    return zlib.compress(data, 1)


def decode_snapshot(data: bytes) -> RunState:
    """The state a snapshot holds; :class:`SnapshotDecodeError` if it cannot be used.

    Example::

        state = decode_snapshot(encode_snapshot(state))
    """
    inflate = zlib.decompressobj()
    try:
        # Bounded: edited bytes must not inflate into all of memory.
        raw = inflate.decompress(data, MAX_STATE_BYTES)
    except zlib.error as exc:
        raise SnapshotDecodeError(f"the snapshot does not decompress ({exc})") from None
    if inflate.unconsumed_tail or not inflate.eof:
        raise SnapshotDecodeError("the snapshot is cut short or inflates past "
                                  f"{MAX_STATE_BYTES} bytes")
    return _decoded(raw)


def _decoded(data: bytes) -> RunState:
    # The collector would walk the growing heap again and again while a big state's
    # objects are made (measured: 4x the decode time of a 20,000-task state).
    collecting = gc.isenabled()
    gc.disable()
    try:
        snap = _DECODER.decode(data)
        if snap.shape != SNAPSHOT_SHAPE:
            raise SnapshotDecodeError(f"the snapshot is of another state shape "
                                      f"({snap.shape!r}, this version writes {SNAPSHOT_SHAPE!r})")
        fields = list(astuple(snap.state))
        fields[_TASKS_AT] = {tid: TaskState(*astuple(t)) for tid, t in snap.state.tasks.items()}
        fields[_ESCALATIONS_AT] = {tid: Escalation(*astuple(e))
                                   for tid, e in snap.state.escalations.items()}
        return RunState(*fields)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError) as exc:
        raise SnapshotDecodeError(f"the snapshot does not decode ({exc})") from None
    finally:
        if collecting:
            gc.enable()


def snapshot_differences(stored: RunState, folded: RunState) -> list[str]:
    """The fields where a snapshot's state differs from the fold (as encoded: order counts).

    Names a task's field as ``tasks[ID].FIELD``; empty when they agree.

    Example::

        >>> snapshot_differences(RunState(run_id="r1"), RunState(run_id="r1", reason="x"))
        ['reason']
    """
    enc = _ENCODER.encode
    found: list[str] = []
    for f in dataclasses.fields(RunState):
        a, b = getattr(stored, f.name), getattr(folded, f.name)
        if enc(a) == enc(b):
            continue
        if f.name == "tasks" and list(a) == list(b):
            for tid, task in a.items():
                found.extend(f"tasks[{tid}].{g.name}" for g in dataclasses.fields(TaskState)
                             if enc(getattr(task, g.name)) != enc(getattr(b[tid], g.name)))
        else:
            found.append(f.name)
    return found


# -- when, and the writer the driver holds ----------------------------------


def snapshot_due(last: int, seq: int, every: int, state_bytes: int = 0) -> bool:
    """Whether a snapshot is due at ``seq``: a multiple of the interval was passed since ``last``.

    The interval is ``every`` events, or more for a big state: at least
    ``state_bytes / SNAPSHOT_BYTES_PER_EVENT`` (``state_bytes``: the size of
    the last snapshot taken), so that snapshots never write more than about
    that many bytes per event of the run. ``last`` is the seq of the last
    snapshot taken (or where the drive began); ``every=0``: never. Taken on
    multiples, not ``every`` events after the last, so resumes of a run do not
    each push its next snapshot away.

    Example::

        >>> snapshot_due(1990, 2003, 1000), snapshot_due(2003, 2990, 1000), snapshot_due(0, 9, 0)
        (True, False, False)
        >>> snapshot_due(1990, 2003, 1000, state_bytes=4_000_000)   # every 7,812 here
        False
    """
    if every <= 0:
        return False
    interval = max(every, state_bytes // SNAPSHOT_BYTES_PER_EVENT)
    return seq // interval > last // interval


class SnapshotWriter:
    """Takes a driver's snapshots: encoded when due, stored once their seq is durable.

    :meth:`take` runs before each append: when a snapshot is due it encodes
    the driver's state as it is at that moment, at ``state.seq`` -- which may
    be past the batch being appended (the driver decides while a commit is
    in flight), in which case that seq is in the next batch. :meth:`store`
    runs after each append: once the snapshot's seq is durable it is stored
    with the chain hash of the event there. A snapshot that fails to be
    stored logs a warning and the run goes on: it is only a cache.

    Example::

        writer = SnapshotWriter(every=2000, seq=state.seq)
        writer.take(state)
        envelopes = await store.append(...)
        await writer.store(store, envelopes)
    """

    __slots__ = ("every", "failures", "keep", "last", "pending", "size", "written")

    def __init__(self, every: int = DEFAULT_SNAPSHOT_EVERY, seq: int = 0,
                 keep: int = DEFAULT_SNAPSHOT_KEEP) -> None:
        self.every = every
        self.keep = keep
        #: The seq of the last snapshot taken (or where the drive began).
        self.last = seq
        #: A snapshot taken and not yet stored: its seq and bytes.
        self.pending: tuple[int, bytes] | None = None
        #: The size of the last snapshot taken (its JSON): a big state is taken less often.
        self.size = 0
        #: Snapshots stored, and those that failed (for tests and benchmarks).
        self.written = 0
        self.failures = 0

    def take(self, state: RunState) -> None:
        """Encode ``state`` now if a snapshot is due (stored by :meth:`store` once durable)."""
        seq = state.seq
        if self.pending is not None or not snapshot_due(self.last, seq, self.every, self.size):
            return
        self.last = seq
        try:
            self.pending = (seq, state_json(state))
            self.size = len(self.pending[1])
        except (NotImplementedError, TypeError, ValueError, OverflowError) as exc:
            self.failures += 1
            log.warning("No snapshot of run %r at seq %d: its state does not encode (%s).",
                        state.run_id, seq, exc)

    async def store(self, store: EventStore, appended: Sequence[Envelope]) -> None:
        """Store the pending snapshot if ``appended`` (a durable batch) holds its seq."""
        if self.pending is None or not appended:
            return
        seq, data = self.pending
        first = appended[0].seq
        if seq > appended[-1].seq:
            return  # its events are in a later batch
        self.pending = None
        if seq < first:
            return  # not reachable: a snapshot's events are in the next batch at the latest
        at = appended[seq - first]
        try:
            data = await asyncio.to_thread(compress_snapshot, data)
            await store.put_snapshot(at.run_id, seq, at.hash, SNAPSHOT_FORMAT, data,
                                     keep=self.keep)
        except Exception as exc:  # a cache that fails never fails the run
            self.failures += 1
            log.warning("Could not store the snapshot of run %r at seq %d (%s: %s); the run "
                        "goes on, a resume folds from an older one.", at.run_id, seq,
                        type(exc).__name__, exc)
            return
        self.written += 1
