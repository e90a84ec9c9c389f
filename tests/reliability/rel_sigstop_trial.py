"""One SIGSTOP fencing trial, and many of them: a paused owner wakes after a takeover.

A trial (:func:`run_trial`), with real processes on one store:

1. process A (``rel_sigstop_child.py``, role A) starts a run; its
   side-effecting agent logs its entry at the fenced sink and thinks;
2. once A is inside the agent, A is SIGSTOPped, at a moment it holds no
   open transaction (a process stopped inside one would hold the database's
   locks: another story) and before its effect reached either sink;
3. process B takes the run over once A's lease lapsed, with a higher fence,
   and drives it to its end (the idempotent agent is called again, the
   other escalates "outcome unknown"): a ``resume`` process started
   meanwhile (role B), or a worker serving the store all along (:class:`Taker`);
4. A is SIGCONTed and left to finish what it was doing.

A setup that missed this interleaving (A performed before the pause, lost
its lease before it, or B could not take over) is not counted: :func:`run_trial` says why, and
:func:`run_trials` redoes it with a fresh run. :class:`Trial` holds what the
log, the side channel (:mod:`rel_acks`) and both sinks say afterwards.

Example::

    taker = await Taker.start_worker(place, tmp_path, spawned)
    trials, redone = await run_trials(store, place, SigGoal(sink=place.sink), n=8,
                                      base=tmp_path, spawned=spawned, tag="thread",
                                      taker=taker)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from rel_harness import HERE, Child, wait_for
from rel_sigstop_sink import FencedCall, FencedSink, FencedState
from rel_sigstop_workflow import BOOK_TASK, SigGoal, wf
from rel_sink import Effect, Sink

from ledgerflow.eventstore import EventStore
from ledgerflow.machines.leasing import read_lease
from ledgerflow.replay import verify_run

__all__ = ["A_TTL_S", "THINK_S", "Place", "Taker", "Trial", "run_trial", "run_trials"]

CHILD = HERE / "rel_sigstop_child.py"
#: A's lease: short, so a pause outlives it soon; B's: long, nothing to prove there.
A_TTL_S = 1.0
B_TTL_S = 10.0
#: How long A's agent thinks mid-call: room for the pause to land before its effect.
THINK_S = 1.0
#: How long B may take to take over and finish once A is paused (a miss is redone).
TAKEOVER_TIMEOUT_S = 30.0
#: Where B leaves a run: done, or waiting on a person (an "outcome unknown").
SETTLED = frozenset({"completed", "failed", "cancelled", "waiting"})


@dataclass
class Trial:
    """What one trial left behind, read from the log, the side channel and the sinks."""

    run_id: str
    a_pid: int
    b_pid: int
    a_outcome: str
    b_outcome: str
    #: The seq of B's RunResumed: every event from it on must be B's.
    takeover_seq: int
    #: A's acknowledged events at or after the takeover (must be 0).
    a_events_after_takeover: int
    #: Events from the takeover on that B's side channel does not acknowledge (must be 0).
    events_not_by_b: int
    #: A's appends after the pause that the store refused with LeaseLostError.
    a_refused_appends: int
    #: A's other appends after the pause that were not acknowledged (cancelled before sent).
    a_unacknowledged_appends: int
    calls: list[FencedCall]
    state: FencedState | None
    naive: list[Effect]
    escalated_unknown: bool
    #: Effects at the naive sink when B had settled the run (A still paused).
    naive_at_settle: int = 0
    verify_lines: list[str] = field(default_factory=list)
    #: The end of A's and B's stderr, for a failing assertion to show.
    stderr_tails: str = ""

    @property
    def story(self) -> str:
        """The run id and what its processes said: the message of a failed check."""
        return f"{self.run_id}\n{self.stderr_tails}"

    def _by(self, pid: int, what: str) -> list[FencedCall]:
        return [c for c in self.calls if c.pid == pid and c.what == what]

    @property
    def a_token(self) -> int:
        return self._by(self.a_pid, "enter")[0].token

    @property
    def b_token(self) -> int | None:
        entered = self._by(self.b_pid, "enter")
        return entered[0].token if entered else None

    @property
    def a_late_write(self) -> FencedCall | None:
        """A's write at the fenced sink (it came only after the pause), if it got there."""
        late = [c for c in self.calls if c.pid == self.a_pid and c.what != "enter"]
        return late[0] if late else None

    @property
    def b_wrote_first(self) -> bool:
        """Whether B's accepted write came before A's late one (or A's never came)."""
        b = self._by(self.b_pid, "accepted")
        late = self.a_late_write
        return bool(b) and (late is None or b[0].n < late.n)

    def naive_by(self, pid: int) -> int:
        return sum(e.pid == pid for e in self.naive)


async def _no_open_transaction(url: str, application_name: str) -> bool:
    """Whether A (its connections carry ``application_name``) holds no open transaction.

    Adapted from ``tests/pool/pool_chaos.py``; on PostgreSQL only A's own sessions
    count, so other tests' transactions on the same server cannot stall a trial.
    """
    if url.startswith(("postgres://", "postgresql://")):
        import asyncpg  # noqa: PLC0415 - only PostgreSQL needs it

        conn = await asyncpg.connect(url.split("?", 1)[0])
        try:
            for _ in range(3):  # a statement of A's in flight at the stop ends in a moment
                busy = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
                    " AND state <> 'idle'", application_name)
                if not busy:
                    return True
                await asyncio.sleep(0.05)
            return False
        finally:
            await conn.close()
    # SQLite: the write lock is free if a BEGIN IMMEDIATE of our own gets it.
    conn = sqlite3.connect(url, timeout=0.3, isolation_level=None)
    try:
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        return False
    finally:
        conn.close()


def _side_channel(path: Path, run_id: str) -> tuple[set[int], Counter[str]]:
    """The seqs of ``run_id`` a process had acknowledged; its other appends by error name."""
    acked: set[int] = set()
    tries: dict[str, bool] = {}
    errors: Counter[str] = Counter()
    if not path.exists():
        return acked, errors
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        if doc["k"] == "try" and doc["run"] != run_id:
            continue
        if doc["k"] == "try":
            tries[doc["id"]] = False
        elif doc["id"] not in tries:
            continue  # another run's
        elif doc["k"] == "ack":
            tries[doc["id"]] = True
            acked.update(doc["seqs"])
        elif doc["k"] == "err":
            tries[doc["id"]] = True
            errors[doc["error"]] += 1
    errors["never answered"] = sum(not answered for answered in tries.values())
    return acked, errors


def _last_json(child: Child) -> dict[str, Any]:
    lines = child.stdout().strip().splitlines()
    assert lines, f"child {child.proc.pid} printed nothing:\n{child.stderr()}"
    doc: dict[str, Any] = json.loads(lines[-1])
    return doc


@dataclass(frozen=True)
class Place:
    """Where a trial runs: the store URL and the sinks' location (a file, or a DSN + schema)."""

    url: str
    sink: str
    sink_schema: str = ""

    def tagged(self, application_name: str) -> str:
        """The store URL whose PostgreSQL sessions carry ``application_name``."""
        if not self.url.startswith(("postgres://", "postgresql://")):
            return self.url
        return f"{self.url}{'&' if '?' in self.url else '?'}application_name={application_name}"


def _app_name(run_id: str) -> str:
    """How A's PostgreSQL sessions name themselves (``pg_stat_activity.application_name``)."""
    return f"sigstop-A-{run_id}"


async def _paused_cleanly(store: EventStore, a: Child, place: Place, fenced: FencedSink,
                          naive: Sink, run_id: str) -> str:
    """SIGSTOP A holding its lease, outside any transaction; "" once done, else why not."""
    for _ in range(200):
        a.signal(signal.SIGSTOP)
        if any(c.pid == a.proc.pid and c.what != "enter" for c in await fenced.calls(run_id)) \
                or any(e.run_id == run_id for e in await naive.effects()):
            return "A performed its effect before the pause"
        holder = await read_lease(store, run_id)
        if holder is None or f":{a.proc.pid}:" not in holder.owner:
            return "A lost its lease before the pause (renewals starved)"
        if await _no_open_transaction(place.url, _app_name(run_id)) and (
                place.sink_schema or await _no_open_transaction(place.sink, "")):
            return ""
        a.signal(signal.SIGCONT)
        await asyncio.sleep(0.01)
    return "A was always inside a transaction"


@dataclass
class Taker:
    """Who takes a paused run over: a fresh ``resume`` process per trial, or one ``worker``."""

    kind: str
    worker: Child | None = None
    worker_id: str = ""
    acks: Path | None = None

    @classmethod
    async def start_worker(cls, place: Place, base: Path, spawned: list[Child]) -> Taker:
        """A worker process (``rel_sigstop_child.py``, role worker), once it is serving."""
        acks = base / "worker.jsonl"
        spec = base / "worker.json"
        spec.write_text(json.dumps({"role": "worker", "url": place.url, "acks": str(acks),
                                    "ttl_s": B_TTL_S}))
        child = Child.start(CHILD, [str(spec)], base / "worker")
        spawned.append(child)

        async def serving() -> bool:
            assert not child.done, f"the worker exited:\n{child.stderr()}"
            return bool(child.stdout().strip())

        await wait_for(serving, "the worker to start")
        return cls("worker", child, child.stdout().split()[0], acks)

    async def stop(self) -> None:
        """Stop the worker (SIGTERM drains it); it must exit cleanly."""
        if self.worker is not None:
            self.worker.signal(signal.SIGTERM)
            assert await self.worker.exited() == 0, self.worker.stderr()


async def run_trial(store: EventStore, place: Place, goal: SigGoal, run_id: str, base: Path,
                    spawned: list[Child], taker: Taker) -> Trial | str:
    """One trial (see the module docstring); a :class:`Trial`, or why it did not happen."""
    fenced, naive = FencedSink(place.sink, place.sink_schema), Sink(place.sink, place.sink_schema)
    go = base / f"{run_id}.go"
    specs = {}
    for role, ttl in (("A", A_TTL_S), ("B", B_TTL_S)):
        specs[role] = base / f"{run_id}-{role}.json"
        url = place.url if role == "B" else place.tagged(_app_name(run_id))
        specs[role].write_text(json.dumps({
            "role": role, "url": url, "run_id": run_id, "goal": goal.model_dump(),
            "acks": str(base / f"{run_id}-{role}.jsonl"), "ttl_s": ttl, "think_s": THINK_S,
            "go": str(go)}))
    b = None
    if taker.kind == "resume":
        b = Child.start(CHILD, [str(specs["B"])], base / f"{run_id}-B")
        spawned.append(b)
    a = Child.start(CHILD, [str(specs["A"])], base / f"{run_id}-A")
    spawned.append(a)
    why = ""

    async def a_entered() -> bool:
        return a.done or any(c.pid == a.proc.pid for c in await fenced.calls(run_id))

    # Every 0.1 s: well inside A's THINK_S, and each look is a new connection to the sink.
    await wait_for(a_entered, f"A to enter the agent of {run_id}", pause_s=0.1)
    if a.done:
        # Only a lease lost to starved renewals is a missed setup; anything else is a bug.
        outcome = _last_json(a)["outcome"]
        assert outcome == "RunBusyError", f"A ended with {outcome}:\n{a.stderr()}"
        why = "A lost its lease before its agent was called"
    else:
        why = await _paused_cleanly(store, a, place, fenced, naive, run_id)
    if not why:
        go.touch()  # B takes over once A's lease lapsed, and drives the run to its end
        if not await _settled(store, run_id, b):
            why = "B did not take over in time"
    # What an operator looking at the remote system would see now, A still paused.
    at_settle = sum(e.run_id == run_id for e in await naive.effects())
    a.signal(signal.SIGCONT)
    go.touch()
    if why:
        for child in (a, b):
            if child is not None:
                child.kill()
        return why
    assert await a.exited() == 0, a.stderr()
    if b is not None:
        assert await b.exited() == 0, b.stderr()
    trial = await _read_trial(store, run_id, base, a, b, taker, fenced, naive)
    trial.naive_at_settle = at_settle
    return trial


async def _settled(store: EventStore, run_id: str, b: Child | None) -> bool:
    """Whether B drove the run to where it stops (done, or waiting on a person) in time."""
    async def settled() -> bool:
        if b is not None:
            return b.done
        summary = await store.run(run_id)
        return summary is not None and summary.status in SETTLED

    with contextlib.suppress(AssertionError):
        await wait_for(settled, f"B to settle {run_id}", timeout_s=TAKEOVER_TIMEOUT_S,
                       pause_s=0.1)
        return True
    return False


async def _read_trial(store: EventStore, run_id: str, base: Path, a: Child, b: Child | None,
                      taker: Taker, fenced: FencedSink, naive: Sink) -> Trial:
    a_doc = _last_json(a)
    if b is not None:
        b_doc, b_acks = _last_json(b), base / f"{run_id}-B.jsonl"
    else:
        assert taker.worker is not None
        assert taker.acks is not None
        b_doc = {"pid": taker.worker.proc.pid, "owner": taker.worker_id}
        b_acks = taker.acks
    log = await store.read_all(run_id)
    resumed = [e for e in log if e.type == "RunResumed"]
    said = f"A:\n{a.stderr()[-1500:]}\nB:\n{(b or taker.worker or a).stderr()[-1500:]}"
    assert len(resumed) == 1, f"{run_id}: {len(resumed)} takeovers in the log\n{said}"
    assert msgspec.json.decode(resumed[0].data)["by"] == b_doc["owner"], said
    takeover = resumed[0].seq
    a_acked, a_errors = _side_channel(base / f"{run_id}-A.jsonl", run_id)
    b_acked, _ = _side_channel(b_acks, run_id)
    summary = await store.run(run_id)
    calls = await fenced.calls(run_id)
    key = next(c.key for c in calls)
    report = await verify_run(store, run_id, workflow=wf)
    return Trial(
        run_id=run_id, a_pid=a.proc.pid, b_pid=int(b_doc["pid"]),
        a_outcome=str(a_doc["outcome"]), b_outcome="missing" if summary is None else summary.status,
        takeover_seq=takeover,
        a_events_after_takeover=sum(s >= takeover for s in a_acked),
        events_not_by_b=sum(e.seq >= takeover and e.seq not in b_acked for e in log),
        a_refused_appends=a_errors["LeaseLostError"],
        a_unacknowledged_appends=sum(a_errors.values()) - a_errors["LeaseLostError"],
        calls=calls, state=await fenced.state(key),
        naive=[e for e in await naive.effects() if e.run_id == run_id and e.task_id == BOOK_TASK],
        escalated_unknown=any(e.type == "TaskEscalated" and b"outcome_unknown" in e.data
                              for e in log if e.seq >= takeover),
        verify_lines=[] if report.ok else report.lines(),
        stderr_tails="\n".join(f"--- {who} stderr:\n{child.stderr()[-1500:]}"
                                for who, child in (("A", a), ("B", b or taker.worker))
                                if child is not None))


async def run_trials(store: EventStore, place: Place, goal: SigGoal, *, n: int, base: Path,
                     spawned: list[Child], tag: str, taker: Taker,
                     parallel: int = 4) -> tuple[list[Trial], Counter[str]]:
    """``n`` trials that reached the interleaving, ``parallel`` at a time; and the redone ones."""
    trials: list[Trial] = []
    redone: Counter[str] = Counter()
    numbers = itertools.count()
    claimed = 0

    async def lane() -> None:
        nonlocal claimed
        while claimed < n:
            claimed += 1
            while True:
                got = await run_trial(store, place, goal, f"ss-{tag}-{next(numbers):03d}",
                                      base, spawned, taker)
                if isinstance(got, Trial):
                    trials.append(got)
                    break
                redone[got] += 1
                assert sum(redone.values()) <= n, f"too many trials missed: {dict(redone)}"

    await asyncio.gather(*(lane() for _ in range(parallel)))
    return trials, redone
