"""Issue 12, scenario 7: a process SIGSTOPped past its lease, inside a side-effecting agent.

Real processes on one SQLite file, and on PostgreSQL: A starts a run and is
paused mid-call; B takes the run over once A's lease lapsed and finishes
it; A is woken (see ``rel_sigstop_trial.py``). Each trial checks:

1. A wrote no event after losing its lease: every event from B's takeover on
   is one B's side channel acknowledged, and A's late appends were refused
   (``LeaseLostError``) or never sent;
2. the sink that checks the fencing token refused A's late write whenever
   B's write, under a higher token, came first, and the effect is applied
   once, under the newest token;
3. what the naive sink, counting by idempotency key, saw: how often A's
   in-flight call still completed after the takeover (a blocking call in a
   thread: always; a journaled side-effecting step started after the wake:
   never, the lease guard refuses it; an asyncio call: whatever it did
   before the drive's cancellation reached it, printed);
4. with a non-idempotent agent B escalated "outcome unknown" and did not
   call it again.

The two stories of the issue (an idempotent and a non-idempotent agent, a
blocking call in flight, a worker taking over) run on both backends; the
variants (a guarded step, an asyncio call, ``resume`` taking over) on SQLite.
The figures are printed (``pytest -s``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import PgPlace
from rel_harness import Child
from rel_sigstop_sink import FencedSink
from rel_sigstop_trial import Place, Taker, Trial, run_trials
from rel_sigstop_workflow import SigGoal
from rel_sink import Sink

from ledgerflow.eventstore import EventStore, open_store

pytestmark = pytest.mark.slow

CASES = {  # name -> (idempotent, mode, who takes over, trials)
    # The story: a blocking call in flight, a worker takes the run over.
    "idempotent-thread-worker": (True, "thread", "worker", 8),
    "once-thread-worker": (False, "thread", "worker", 8),
    # Variants, fewer trials each: a guarded step, an asyncio call, `resume` taking over.
    "idempotent-step-worker": (True, "step", "worker", 4),
    "idempotent-async-worker": (True, "async", "worker", 4),
    "idempotent-thread-resume": (True, "thread", "resume", 4),
}
#: The variants test the library's side of the process, not the store: SQLite only
#: (the suite's time). The two stories of the issue run on both.
BOTH = ("idempotent-thread-worker", "once-thread-worker")
COMBOS = [("sqlite", case) for case in CASES] + [("postgres", case) for case in BOTH]


@pytest.fixture
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    """One SQLite file (and a sink file), or a fresh PostgreSQL schema (and a sink schema)."""
    if request.param == "sqlite":
        return Place(str(tmp_path / "runs.db"), str(tmp_path / "sink.db"))
    # Asked for here, not as an argument: the SQLite trials must not need PostgreSQL.
    pg: PgPlace = request.getfixturevalue("pg")
    return Place(pg.url, pg.dsn, pg.sink_schema)


def figures_line(name: str, trials: list[Trial], redone: Counter[str]) -> str:
    late = [t.a_late_write for t in trials]
    return (f"{name}: trials={len(trials)} redone={dict(redone)} "
            f"a_events_after_takeover={sum(t.a_events_after_takeover for t in trials)} "
            f"a_appends_refused={sum(t.a_refused_appends for t in trials)} "
            f"a_outcomes={dict(Counter(t.a_outcome for t in trials))} "
            f"b_outcomes={dict(Counter(t.b_outcome for t in trials))} "
            f"late_write_at_fenced_sink={sum(c is not None for c in late)} "
            f"refused={sum(c is not None and c.what == 'refused' for c in late)} "
            f"naive_late_effects={sum(t.naive_by(t.a_pid) for t in trials)} "
            f"naive_duplicates={sum(len(t.naive) > 1 for t in trials)} "
            f"escalated_unknown={sum(t.escalated_unknown for t in trials)} "
            f"naive_effects_when_b_settled={sum(t.naive_at_settle for t in trials)} "
            f"tokens_a_b={sorted({(t.a_token, t.b_token) for t in trials}, key=str)}")


@pytest.mark.parametrize(("place", "case"), COMBOS, indirect=["place"])
async def test_sigstopped_owner_writes_nothing_after_takeover_and_the_token_fences_its_call(
    place: Place, case: str, tmp_path: Path, spawned: list[Child],
) -> None:
    idempotent, mode, kind, n = CASES[case]
    await Sink(place.sink, place.sink_schema).create()
    await FencedSink(place.sink, place.sink_schema).create()
    goal = SigGoal(sink=place.sink, sink_schema=place.sink_schema, idempotent=idempotent,
                   mode=mode)
    store: EventStore
    async with open_store(place.url) as store:  # created once, before the children race
        taker = (await Taker.start_worker(place, tmp_path, spawned) if kind == "worker"
                 else Taker("resume"))
        trials, redone = await run_trials(store, place, goal, n=n, base=tmp_path,
                                          spawned=spawned, tag=case, taker=taker)
        await taker.stop()
    backend = "postgres" if place.sink_schema else "sqlite"
    print(figures_line(f"{backend} {case}", trials, redone))
    assert len(trials) == n
    for t in trials:
        # 1. Nothing A appended after it lost the lease; its late appends were refused.
        assert t.a_events_after_takeover == 0, t.story
        assert t.events_not_by_b == 0, t.story
        assert t.verify_lines == [], t.story
        assert t.a_outcome in {"RunBusyError", "LeaseLostError"}, t.story
        b_token = t.b_token
        late = t.a_late_write
        if idempotent:
            # 2. B performed under a higher token, first; A's late write was refused.
            assert t.b_outcome == "completed", t.story
            assert b_token is not None
            assert b_token > t.a_token
            assert t.b_wrote_first, t.story
            if late is not None:
                assert late.what == "refused", t.story
            assert t.state is not None
            assert (t.state.token, t.state.writes, t.state.pid) == (b_token, 1, t.b_pid)
        else:
            # 4. B never called the non-idempotent agent again: it escalated.
            assert t.escalated_unknown, t.story
            assert t.b_outcome == "waiting", t.story
            assert b_token is None, t.story
            assert t.naive_by(t.b_pid) == 0, t.story
            # When B escalated, the effect had not happened yet: it was still in A's hands.
            assert t.naive_at_settle == 0, t.story
            # No higher token was ever shown to the sink, so A's late call is the one effect.
            assert late is not None
            assert late.what == "accepted", t.story
        # 3. The naive sink: a late blocking call lands; a guarded step never starts; an
        # asyncio call is cancelled once A's renewal finds the lease gone, unless it was
        # already past its last await (a figure, not asserted: it is a race).
        if mode == "thread":
            assert late is not None, t.story
            assert t.naive_by(t.a_pid) == 1, t.story
        elif mode == "step":
            assert late is None, t.story
            assert t.naive_by(t.a_pid) == 0, t.story
