"""Random tamperings of real runs in SQLite files, and what finds each (issue 12, scenario 5).

The runs are the travel demo (several goals) and generated ones (random
plans, failing and retried attempts, journaled steps with tokens and cost,
an escalation left waiting). Each trial copies one run's store, edits its
``events`` (and ``runs``) rows with plain ``sqlite3`` as an attacker with
write access would, and asks five questions:

- ``plain``: does ``verify`` (chain, transitions; no workflow) fail?
- ``workflow``: does ``verify --workflow`` (adds determinism) fail?
- ``head``: does ``verify --head`` fail, with the head anchored before the
  tampering and kept out of the attacker's reach?
- ``head_rewritten``: the attacker also replaced that kept anchor with the
  head of the log as they left it (no key): does ``verify --head`` fail?
- ``keyed``: the attacker also replaced a *keyed* anchor with their head and a
  MAC under a key of their own (they do not have the real one): does
  ``verify --head --key-file`` fail?
- ``refused``: does ``resume`` refuse the run (:class:`ChainBrokenError`)?

The tamperings (``KINDS``), each naive and with the chain recomputed from the
first changed row on and the ``runs`` row fixed to match (the attacker's best
move): a bit flipped in a column, a row's JSON value edited, a row deleted,
two rows swapped, a row inserted (a copy of another, before an existing
one), the tail truncated. A trial that leaves the rows as they were (a
recomputed flip of the hash column) is drawn again.

Used by ``test_replay_tamper.py`` (a few hundred trials) and
``benchmarks/tamper_trials.py`` (thousands, the table in docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import GENESIS_HASH, chain_hash, open_store
from ledgerflow.eventstore.chain_keys import anchor_mac
from ledgerflow.eventstore.envelope import _hash_text, parse_at
from ledgerflow.examples import travel
from ledgerflow.machines import (
    AgentContext,
    Budget,
    Metered,
    Orchestrator,
    RetryPolicy,
    Workflow,
)
from ledgerflow.machines.errors import ChainBrokenError
from ledgerflow.replay.anchors import Anchor, AnchorKeys, head_anchor
from ledgerflow.replay.verify import verify_run

__all__ = ["COLUMNS", "KINDS", "Case", "Tally", "build_cases", "run_trials", "table"]

KINDS = ("bit flip", "edited value", "deleted row", "swapped rows", "inserted row",
         "truncated tail")
COLUMNS = ("plain", "workflow", "head", "head_rewritten", "keyed", "refused")
KEY = b"the real chain key, kept off the store host"
ATTACKER_KEY = b"a key the attacker made up itself"


# -- generated runs -------------------------------------------------------------


class GenGoal(BaseModel):
    tasks: int
    seed: int


class GenInput(BaseModel):
    n: int
    label: str


class GenOutput(BaseModel):
    value: int
    note: str
    confidence: float


gen = Workflow("tamper-gen", goal=GenGoal, budget=Budget(max_retries=50))
_FAILED_ONCE: set[str] = set()


@gen.agent(input=GenInput, output=GenOutput, retry=RetryPolicy(max_attempts=3),
           min_confidence=0.5)
async def work(inp: GenInput, ctx: AgentContext) -> GenOutput:
    async def quote() -> Metered:
        return Metered({"price": inp.n * 7}, tokens=10 + inp.n, cost=0.001 * inp.n)

    priced = await ctx.step("quote", quote)
    key = f"{ctx.idempotency_key}"
    if inp.n % 4 == 1 and key not in _FAILED_ONCE:  # some attempts fail once, and are retried
        _FAILED_ONCE.add(key)
        raise RuntimeError(f"flaky upstream for {inp.label}")
    confidence = 0.2 if inp.n % 9 == 8 else 0.9  # a few escalate: the run waits
    return GenOutput(value=int(priced["price"]), note=f"done {inp.label}",
                     confidence=confidence)


@gen.planner
async def gen_plan(goal: GenGoal, ctx: AgentContext) -> Plan:
    rng = random.Random(goal.seed)
    tasks = []
    for i in range(goal.tasks):
        needs = [f"t{j}" for j in range(i) if rng.random() < 0.3][:2]
        tasks.append(Task(id=f"t{i}", agent="work", needs=needs,
                          inputs={"n": rng.randrange(40), "label": f"task {i}"}))
    return Plan(tasks=tasks)


# -- the runs tampered with -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    """One pristine run in its own SQLite file, with the anchors taken of it."""

    db: Path
    run_id: str
    workflow: Workflow
    head: Anchor
    keyed: Anchor
    events: int


async def _case(db: Path, workflow: Workflow, goal: BaseModel) -> Case:
    async with open_store(db) as store:
        run = await Orchestrator(store).start(workflow, goal)
        keys = AnchorKeys(mac_key=KEY)
        return Case(db, run.run_id, workflow, await head_anchor(store, run.run_id),
                    await head_anchor(store, run.run_id, keys=keys),
                    await store.last_seq(run.run_id))


def build_cases(folder: Path, *, generated: int = 4) -> list[Case]:
    """The demo run for three goals and ``generated`` runs of random plans, each in a file."""
    goals: list[tuple[Workflow, BaseModel]] = [
        (travel.wf, travel.TripGoal(destination=d, passengers=p))
        for d, p in (("Lisbon", 2), ("Porto", 1), ("Oslo", 4))]
    goals += [(gen, GenGoal(tasks=3 + 2 * i, seed=i)) for i in range(generated)]

    async def go() -> list[Case]:
        return [await _case(folder / f"case{i}.db", wf, goal)
                for i, (wf, goal) in enumerate(goals)]

    return asyncio.run(go())


# -- tampering ------------------------------------------------------------------

_COLUMNS = ("type", "at", "data", "prev_hash", "hash")
Row = list[Any]  # [seq, type, at, data, prev_hash, hash]


def _rows(conn: sqlite3.Connection, run_id: str) -> list[Row]:
    return [list(r) for r in conn.execute(
        "SELECT seq, type, at, data, prev_hash, hash FROM events WHERE run_id = ? ORDER BY seq",
        (run_id,))]


def _rechain(run_id: str, rows: list[Row], start: int) -> None:
    """Renumber rows from 1 and recompute every hash from index ``start`` on."""
    prev = rows[start - 1][5] if start > 0 else GENESIS_HASH
    for i in range(start, len(rows)):
        row = rows[i]
        row[0] = i + 1
        row[4] = prev
        try:
            row[5] = chain_hash(prev, run_id, i + 1, row[1], parse_at(row[2]), row[3].encode())
        except ValueError:  # a flipped time no reader parses: hash its text as it stands
            row[5] = _hash_text(prev, run_id, i + 1, row[1], row[2], row[3].encode())
        prev = row[5]


def _flip(rng: random.Random, text: str) -> str:
    i = rng.randrange(len(text))
    # Within 7 bits and never NUL: the edit stays text SQLite and the reader accept.
    flipped = chr((ord(text[i]) ^ (1 << rng.randrange(7))) or 1) if ord(text[i]) < 128 \
        else text[i]
    return text[:i] + flipped + text[i + 1:]


def _edit_value(rng: random.Random, doc: Any) -> tuple[Any, bool]:
    """``doc`` with one random leaf changed (a string, number or bool), and whether one was."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) \
            if isinstance(node, list) else ()
        for key, value in items:
            if isinstance(value, dict | list):
                walk(value)
            else:
                paths.append((node, key))

    walk(doc)
    if not paths:
        return doc, False
    node, key = rng.choice(paths)
    value = node[key]
    if isinstance(value, bool):
        node[key] = not value
    elif isinstance(value, int | float):
        node[key] = value + rng.choice((1, -1, 10, 0.5))
    elif isinstance(value, str):
        node[key] = value + rng.choice(("x", " (approved)", "0")) if value else "x"
    else:
        node[key] = "x"
    return doc, True


def tamper(rng: random.Random, rows: list[Row], run_id: str, kind: str, recompute: bool
           ) -> tuple[list[Row], int | None]:
    """The rows after one tampering, and the ``last_seq`` to write in ``runs`` (None: leave)."""
    rows = [list(r) for r in rows]
    n = len(rows)
    first = rng.randrange(n)
    last_seq: int | None = None
    if kind == "bit flip":
        col = rng.randrange(1, 6)
        rows[first][col] = _flip(rng, rows[first][col])
    elif kind == "edited value":
        doc, _ = _edit_value(rng, json.loads(rows[first][3]))
        rows[first][3] = json.dumps(doc, separators=(",", ":"))
    elif kind == "deleted row":
        del rows[first]
        first = min(first, len(rows) - 1)
    elif kind == "swapped rows":
        other = rng.randrange(n - 1)
        other += other >= first
        a, b = sorted((first, other))
        # The contents move; the seqs stay where they were (a row keeps its key).
        rows[a][1:4], rows[b][1:4] = rows[b][1:4], rows[a][1:4]
        first = a
    elif kind == "inserted row":
        copy = list(rows[rng.randrange(n)])
        rows.insert(first, copy)
        for i in range(first + 1, len(rows)):
            rows[i][0] += 1
        copy[0] = first + 1
    elif kind == "truncated tail":
        keep = rng.randrange(1, n)
        rows = rows[:keep]
        return rows, keep  # the runs row is edited to match: the best a deleter can do
    if recompute:
        _rechain(run_id, rows, max(first, 0))
        last_seq = len(rows)
    return rows, last_seq


def _same_log(a: list[Row], b: list[Row]) -> bool:
    """Whether two logs read back the same: a time's text may differ and mean the same
    instant (``T`` is any separator to ``fromisoformat``, ``-00:00`` is ``+00:00``), and
    the hash covers the instant, not the text."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x[:2] + x[3:] != y[:2] + y[3:]:
            return False
        if x[2] != y[2]:
            try:
                if parse_at(x[2]) != parse_at(y[2]):
                    return False
            except ValueError:
                return False
    return True


def _write(db: Path, run_id: str, rows: list[Row], last_seq: int | None) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
            conn.executemany(
                "INSERT INTO events (run_id, seq, type, at, data, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", [(run_id, *r) for r in rows])
            if last_seq is not None:
                conn.execute("UPDATE runs SET last_seq = ? WHERE run_id = ?",
                             (last_seq, run_id))
    finally:
        conn.close()


# -- detection ------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """Trials and detections per (kind, recomputed) and column; crashes are bugs."""

    trials: Counter[tuple[str, bool]] = field(default_factory=Counter)
    found: Counter[tuple[str, bool, str]] = field(default_factory=Counter)
    crashes: list[str] = field(default_factory=list)
    #: Errors other than ChainBrokenError that resume raised, by class name.
    other_refusals: Counter[str] = field(default_factory=Counter)

    def total(self, column: str) -> tuple[int, int]:
        """``(found, trials)`` of one column over every kind."""
        return (sum(v for (_, _, c), v in self.found.items() if c == column),
                sum(self.trials.values()))


async def _fails(tally: Tally, what: str, coro: Any) -> bool:
    """Whether a verify finds the tampering: a failed check, or a typed refusal."""
    try:
        report = await coro
    except LedgerflowError:
        return True
    except Exception as exc:  # not typed: a bug to report, still not a pass
        tally.crashes.append(f"{what}: {type(exc).__name__}: {exc}")
        return True
    return not report.ok


async def _detect(tally: Tally, case: Case, db: Path, label: str) -> dict[str, bool]:
    rid = case.run_id
    async with open_store(db, create=False) as store:
        try:
            envs = await store.read_all(rid)
        except LedgerflowError:  # unreadable: every verify fails on it, whatever the head
            envs = []
        # The head of the log as the attacker left it (what they would write in the anchor).
        new_head = Anchor(envs[-1].seq, envs[-1].hash) if envs else case.head
        # Without the real key the best the attacker can do is seal with one of their own.
        forged = Anchor(new_head.seq, new_head.hash,
                        anchor_mac(ATTACKER_KEY, rid, new_head.seq, new_head.hash))
        seen = {
            "plain": await _fails(tally, label, verify_run(store, rid)),
            "workflow": await _fails(tally, label, verify_run(store, rid,
                                                              workflow=case.workflow)),
            "head": await _fails(tally, label, verify_run(store, rid, head=case.head)),
            "head_rewritten": await _fails(tally, label, verify_run(store, rid,
                                                                    head=new_head)),
            # The attacker keeps the real sealed anchor when their log still ends in its
            # head, and otherwise forges one: whichever passes if anything does.
            "keyed": await _fails(tally, label, verify_run(
                store, rid, head=case.keyed if new_head.hash == case.head.hash else forged,
                keys=AnchorKeys(mac_key=KEY))),
        }
        try:
            await Orchestrator(store).resume(rid, case.workflow)
        except ChainBrokenError:
            seen["refused"] = True
        except Exception as exc:
            tally.other_refusals[type(exc).__name__] += 1
            seen["refused"] = False
        else:
            seen["refused"] = False
    return seen


def run_trials(cases: list[Case], folder: Path, trials: int, *, seed: int = 0) -> Tally:
    """``trials`` random tamperings, spread evenly over the kinds (naive and recomputed)."""
    rng = random.Random(seed)
    tally = Tally()
    pristine = {}
    for case in cases:
        conn = sqlite3.connect(case.db)
        pristine[case.run_id] = _rows(conn, case.run_id)
        conn.close()
    variants = [(k, r) for k in KINDS for r in (False, True) if not (
        k == "truncated tail" and r)]

    async def go() -> None:
        for i in range(trials):
            kind, recompute = variants[i % len(variants)]
            case = cases[rng.randrange(len(cases))]
            rows = pristine[case.run_id]
            while True:
                changed, last_seq = tamper(rng, rows, case.run_id, kind, recompute)
                if not _same_log(changed, rows):
                    break
            db = folder / "trial.db"
            shutil.copyfile(case.db, db)
            _write(db, case.run_id, changed, last_seq)
            tally.trials[(kind, recompute)] += 1
            seen = await _detect(tally, case, db, f"trial {i} ({kind}, {recompute})")
            for column, hit in seen.items():
                if hit:
                    tally.found[(kind, recompute, column)] += 1

    asyncio.run(go())
    return tally


def table(tally: Tally) -> str:
    """The markdown table of detections: one row per tampering, one column per check."""
    head = ("| tampering | trials | " + " | ".join(COLUMNS) + " |\n|---|---:|"
            + "---:|" * len(COLUMNS))
    lines = [head]
    for (kind, recompute), n in sorted(tally.trials.items(),
                                       key=lambda kv: (KINDS.index(kv[0][0]), kv[0][1])):
        name = kind + (", chain recomputed" if recompute else
                       " (runs row edited)" if kind == "truncated tail" else "")
        cells = [f"{tally.found[(kind, recompute, c)]}/{n}" for c in COLUMNS]
        lines.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    totals = [tally.total(c) for c in COLUMNS]
    lines.append(f"| **all** | {sum(tally.trials.values())} | "
                 + " | ".join(f"**{f}/{t}**" for f, t in totals) + " |")
    return "\n".join(lines)
