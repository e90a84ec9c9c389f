"""The kill -9 stories of issue 12, scenario 1: processes killed at aimed and random points.

:func:`sqlite_story`: runs in batches, each batch driven by a child process
(``kill9_child.py``, all its runs at once) that is killed, then resumed by
another child killed again (at another kind of point), then by an unarmed
one, until every run of the batch is terminal. Two batches go on at once, so
two processes share the SQLite file.

:func:`pool_story`: runs submitted to a PostgreSQL store, served by three
worker processes (``kill9_worker_child.py``); an armed worker kills itself at
its point, and is replaced, until enough kills happened; the survivors and
the replacements take the orphaned runs over.

Both return :class:`~rel_harness.StoryFigures` from :func:`~rel_harness.check_story`.

Example::

    figures = await sqlite_story(tmp_path, runs=320, seed=12)
    print(figures.line("sqlite"))
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import signal
from collections import Counter
from pathlib import Path
from typing import cast

from rel_acks import AckingStore
from rel_harness import HERE, TERMINAL, Child, StoryFigures, check_story
from rel_killpoints import CATEGORIES
from rel_sink import Sink
from rel_workflow import EFFECT_TASKS, RelGoal, wf

from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.machines import Orchestrator

__all__ = ["pool_story", "sqlite_story"]

KILL9_CHILD = HERE / "kill9_child.py"
WORKER_CHILD = HERE / "kill9_worker_child.py"
#: How often each aimed point is reached per run (bounds the random countdown).
PER_RUN = {"append_then_dispatch": 2, "effect_then_outcome": 2, "mid_batch": 2,
           "in_step_effect": 1, "in_step_plain": 1}


def _kills_by_point(kill_log: Path, kills: int) -> Counter[str]:
    """The aimed points the kill log names; the rest of the kills were the parent's timer."""
    aimed: Counter[str] = Counter()
    if kill_log.exists():
        aimed.update(line.split()[0] for line in kill_log.read_text().splitlines())
    aimed["random"] = kills - sum(aimed.values())
    return aimed


async def _statuses(store: EventStore, run_ids: list[str]) -> dict[str, str]:
    found = {}
    for run_id in run_ids:
        summary = await store.run(run_id)
        found[run_id] = summary.status if summary is not None else "missing"
    return found


async def sqlite_story(base: Path, *, runs: int, seed: int, per_child: int = 16,
                       armed_children: int = 2, parallel: int = 2, fan: int = 6) -> StoryFigures:
    """The SQLite story (see the module docstring); its figures, checked."""
    db, sink, ack_dir = base / "runs.db", Sink(str(base / "sink.db")), base / "acks"
    kill_log = base / "kills.log"
    ack_dir.mkdir()
    await sink.create()
    rng = random.Random(seed)
    categories = itertools.cycle(CATEGORIES)
    run_ids = [f"k9s-{i:04d}" for i in range(runs)]
    figures = StoryFigures()
    slots = asyncio.Semaphore(parallel)
    async with open_store(db) as store:  # created once, before the children race for it

        async def drive_batch(index: int, batch: list[str]) -> None:
            left = batch
            for tries in itertools.count(1):
                if not left:
                    return
                assert tries <= armed_children + 1, f"runs left unfinished: {left}"
                category = next(categories) if tries <= armed_children else ""
                kill_at = ""
                if category and category != "random":
                    kill_at = f"{category}:{rng.randint(1, PER_RUN[category] * len(left))}"
                spec = base / f"b{index:03d}-{tries}.json"
                spec.write_text(json.dumps({"db": str(db), "sink": sink.location, "fan": fan,
                                            "ack_dir": str(ack_dir), "runs": left}))
                async with slots:
                    child = Child.start(KILL9_CHILD, [str(spec)], spec.with_suffix(""),
                                        kill_at=kill_at, kill_log=kill_log)
                    timer = None
                    if category == "random":
                        timer = asyncio.create_task(_kill_later(child, rng.uniform(0.3, 0.9)))
                    code = await child.exited()
                    if timer is not None:
                        timer.cancel()
                assert code in (0, -signal.SIGKILL), f"child exited {code}:\n{child.stderr()}"
                figures.kills += code == -signal.SIGKILL
                left = [r for r, s in (await _statuses(store, left)).items() if s not in TERMINAL]
                assert code != 0 or not left, (
                    f"a clean drive left runs unfinished: {await _statuses(store, left)}\n"
                    + child.stderr())

        await asyncio.gather(*(drive_batch(i, run_ids[at:at + per_child])
                               for i, at in enumerate(range(0, runs, per_child))))
        figures.kill_points = _kills_by_point(kill_log, figures.kills)
        return await check_story(store, sink, run_ids, ack_dir, figures)


async def _kill_later(child: Child, after_s: float) -> None:
    await asyncio.sleep(after_s)
    child.signal(signal.SIGKILL)


async def pool_story(url: str, sink: Sink, base: Path, *, runs: int, kills: int, seed: int,
                     workers: int = 3, spawned: list[Child]) -> StoryFigures:
    """The PostgreSQL worker story (see the module docstring); its figures, checked.

    Every worker started is appended to ``spawned`` (the fixture kills leftovers).
    """
    ack_dir, kill_log = base / "acks", base / "kills.log"
    ack_dir.mkdir()
    await sink.create()
    rng = random.Random(seed)
    categories = itertools.cycle(CATEGORIES)
    figures = StoryFigures()
    timers: list[asyncio.Task[None]] = []
    async with open_store(url) as inner:
        store = cast(EventStore, AckingStore(inner, ack_dir / "submitter.jsonl",
                                             effect_tasks=EFFECT_TASKS))
        orch = Orchestrator(store)
        goal = RelGoal(sink=sink.location, sink_schema=sink.schema, fan=6, nap_s=0.01)
        run_ids = [await orch.submit(wf, goal, run_id=f"k9p-{i:04d}") for i in range(runs)]

        def spawn(armed: bool) -> Child:
            category = next(categories) if armed else ""
            kill_at = f"{category}:{rng.randint(1, 6)}" if category not in ("", "random") else ""
            child = Child.start(WORKER_CHILD, [url, str(ack_dir)], base / f"w{len(spawned):03d}",
                                kill_at=kill_at, kill_log=kill_log)
            if category == "random":
                timers.append(asyncio.create_task(_kill_later(child, rng.uniform(0.8, 2.5))))
            spawned.append(child)
            return child

        pool = [spawn(armed=True) for _ in range(workers)]
        loop = asyncio.get_running_loop()
        give_up = loop.time() + 240
        while True:
            for i, child in enumerate(pool):
                if not child.done:
                    continue
                code = child.proc.returncode
                assert code == -signal.SIGKILL, f"worker exited {code}:\n{child.stderr()}"
                figures.kills += 1
                pool[i] = spawn(armed=figures.kills + workers <= kills)
            statuses = await _statuses(inner, run_ids)
            if all(s in TERMINAL for s in statuses.values()):
                break
            assert loop.time() < give_up, f"runs unfinished: {Counter(statuses.values())}"
            await asyncio.sleep(0.1)
        for timer in timers:
            timer.cancel()
        for child in pool:
            child.signal(signal.SIGTERM)
        for child in pool:
            code = await child.exited()
            if code == -signal.SIGKILL:  # a random timer or an armed point won the race
                figures.kills += 1
            else:
                assert code == 0, f"worker exited {code}:\n{child.stderr()}"
        with contextlib.suppress(FileNotFoundError):
            figures.kill_points = _kills_by_point(kill_log, figures.kills)
        return await check_story(inner, sink, run_ids, ack_dir, figures)
