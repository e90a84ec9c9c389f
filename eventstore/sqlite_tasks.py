"""The SQLite side of the task exchange: offers, claims, facts and answers, flow slots.

Plain synchronous :mod:`sqlite3`, run through ``_one_hop`` on the writer's
thread like :mod:`ledgerflow.eventstore.sqlite_pool`. Every write is ONE
``BEGIN IMMEDIATE`` transaction: SQLite lets one writer in at a time across
every process of the file, so a claim's limit counts and its pick cannot be
raced, and an answered fact and its offer's deletion commit together. Times
are epoch seconds on this machine's clock, as leases are.

Example::

    claim = claim_task_tx(raw_connection, "worker-1", 30.0, ["travel"], {})
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from .mixin_needs import SQLiteRoundTrips
from .sqlite_rows import must_hold_the_fence, rollback
from .tasks import (
    RECEIPT_TTL_S,
    AgentLimit,
    TaskClaim,
    TaskExchangeRow,
    TaskFact,
    TaskOffer,
    answer_of,
    claim_key,
    claim_lost,
)

__all__ = [
    "SQLITE_TASK_TABLES",
    "SQLiteTasks",
    "acquire_slot_tx",
    "answer_tx",
    "claim_task_tx",
    "exchange_rows",
    "fact_answer",
    "offer_tx",
    "post_fact_tx",
    "release_slot",
    "renew_task_tx",
    "task_facts_of",
    "withdraw_tx",
]

SQLITE_TASK_TABLES = (
    # offered_order: the claim order (oldest offer first); a re-offer keeps it.
    """
    CREATE TABLE task_offers (
        run_id           TEXT    NOT NULL,
        task_id          TEXT    NOT NULL,
        attempt          INTEGER NOT NULL CHECK (attempt >= 1),
        label            TEXT    NOT NULL,
        agent            TEXT    NOT NULL,
        seq              INTEGER NOT NULL,
        fence            INTEGER NOT NULL DEFAULT 0,
        offered_order    INTEGER NOT NULL,
        claimed_by       TEXT,
        claim_expires_at REAL,
        token            INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, task_id, attempt)
    )
    """,
    "CREATE INDEX task_offers_to_claim ON task_offers (label, offered_order)",
    "CREATE INDEX task_offers_by_agent ON task_offers (label, agent, claim_expires_at)",
    """
    CREATE TABLE task_facts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      TEXT    NOT NULL,
        task_id     TEXT    NOT NULL,
        attempt     INTEGER NOT NULL,
        token       INTEGER NOT NULL,
        kind        TEXT    NOT NULL,
        data        BLOB    NOT NULL,
        answer      INTEGER,
        answered_at REAL
    )
    """,
    "CREATE INDEX task_facts_by_offer ON task_facts (run_id, task_id, attempt)",
    "CREATE INDEX task_facts_receipts ON task_facts (answered_at) WHERE kind = 'outcome'",
    "CREATE TABLE task_starts (label TEXT NOT NULL, agent TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE INDEX task_starts_by_agent ON task_starts (label, agent, at)",
    "CREATE INDEX task_starts_by_at ON task_starts (at)",
    """
    CREATE TABLE flow_slots (
        key        TEXT NOT NULL,
        holder     TEXT NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (key, holder)
    )
    """,
)
"""Migration 3 of the SQLite schema (see :data:`ledgerflow.eventstore.schema.MIGRATIONS`)."""

_T = TypeVar("_T")

_UPSERT_OFFER_SQL = """
INSERT INTO task_offers (run_id, task_id, attempt, label, agent, seq, fence, offered_order)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET seq = excluded.seq, fence = excluded.fence
"""
_CANDIDATES_SQL = """
SELECT run_id, task_id, attempt, label, agent, seq, token, fence FROM task_offers
WHERE label IN (SELECT value FROM json_each(:labels))
  AND (claimed_by IS NULL OR claim_expires_at <= :now)
ORDER BY offered_order
"""
_LIVE_CLAIMS_SQL = (
    "SELECT count(*) FROM task_offers WHERE label = ? AND agent = ? "
    "AND claimed_by IS NOT NULL AND claim_expires_at > ?"
)
_STARTS_SQL = "SELECT count(*) FROM task_starts WHERE label = ? AND agent = ? AND at > ?"
_CURRENT_SQL = (
    "SELECT 1 FROM task_offers WHERE run_id = ? AND task_id = ? AND attempt = ? "
    "AND token = ? AND claimed_by = ?"
)
_TAKE_SQL = (
    "UPDATE task_offers SET claimed_by = ?, claim_expires_at = ?, token = ? "
    "WHERE run_id = ? AND task_id = ? AND attempt = ?"
)
_RENEW_SQL = (
    "UPDATE task_offers SET claim_expires_at = ? WHERE run_id = ? AND task_id = ? "
    "AND attempt = ? AND token = ? AND claimed_by = ?"
)
_END_OFFER_SQL = "DELETE FROM task_offers WHERE run_id = ? AND task_id = ? AND attempt = ?"
_END_FACTS_SQL = "DELETE FROM task_facts WHERE run_id = ? AND task_id = ? AND attempt = ?"
_ANSWER_SQL = (
    "UPDATE task_facts SET answer = ?, answered_at = ? WHERE id = ? AND run_id = ? "
    "AND answer IS NULL RETURNING kind, task_id, attempt"
)
# Only facts of the offer's current token are the owner's to take.
_FACTS_SQL = """
SELECT f.id, f.run_id, f.task_id, f.attempt, f.token, f.kind, f.data FROM task_facts f
JOIN task_offers o ON o.run_id = f.run_id AND o.task_id = f.task_id AND o.attempt = f.attempt
    AND o.token = f.token
WHERE f.run_id = ? AND f.answer IS NULL ORDER BY f.id
"""
_FACT_ANSWER_SQL = """
SELECT f.answer, f.run_id, f.task_id, f.attempt, f.token,
       EXISTS (SELECT 1 FROM task_offers WHERE run_id = ? AND task_id = ? AND attempt = ?
               AND token = ? AND claimed_by = ?)
FROM (SELECT 1) LEFT JOIN task_facts f ON f.id = ?
"""
_EXCHANGE_SQL = """
SELECT run_id, task_id, attempt, label, agent,
       CASE WHEN claim_expires_at > :now THEN claimed_by END, token, seq
FROM task_offers WHERE :run_id IS NULL OR run_id = :run_id ORDER BY offered_order
"""


def _tx(conn: sqlite3.Connection, body: Callable[[float], _T]) -> _T:
    """Run ``body(now)`` in one BEGIN IMMEDIATE transaction; roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = body(time.time())
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return result


def _delete_attempts(conn: sqlite3.Connection, run_id: str, keys: list[tuple[str, int]]) -> None:
    rows = [(run_id, task_id, attempt) for task_id, attempt in keys]
    conn.executemany(_END_OFFER_SQL, rows)
    conn.executemany(_END_FACTS_SQL, rows)


def offer_tx(
    conn: sqlite3.Connection, run_id: str, offers: list[TaskOffer], seq: int, fence: int | None
) -> None:
    """Upsert the offers (an existing one keeps its claim, only its seq moves), fenced."""
    def body(_now: float) -> None:
        if fence is not None:
            must_hold_the_fence(conn, run_id, fence)
        base = conn.execute("SELECT coalesce(max(offered_order), 0) FROM task_offers").fetchone()
        conn.executemany(_UPSERT_OFFER_SQL, [
            (run_id, o.task_id, o.attempt, o.label, o.agent, seq, fence or 0, int(base[0]) + i)
            for i, o in enumerate(offers, 1)
        ])

    _tx(conn, body)


def _blocked(
    conn: sqlite3.Connection, limits: dict[tuple[str, str], AgentLimit], now: float
) -> set[tuple[str, str]]:
    """The (label, agent) pairs at their limit now (the transaction holds the write lock)."""
    out = set()
    for (label, agent), limit in limits.items():
        if limit.max_concurrent is not None:
            live = conn.execute(_LIVE_CLAIMS_SQL, (label, agent, now)).fetchone()[0]
            if live >= limit.max_concurrent:
                out.add((label, agent))
                continue
        if limit.per_minute is not None:
            started = conn.execute(_STARTS_SQL, (label, agent, now - 60.0)).fetchone()[0]
            if started >= limit.per_minute:
                out.add((label, agent))
    return out


def claim_task_tx(
    conn: sqlite3.Connection,
    owner: str,
    ttl_s: float,
    labels: list[str],
    limits: dict[tuple[str, str], AgentLimit],
) -> TaskClaim | None:
    """Claim the oldest free offer of ``labels`` whose agent is within its limit."""
    def body(now: float) -> TaskClaim | None:
        conn.execute("DELETE FROM task_starts WHERE at <= ?", (now - 60.0,))
        blocked = _blocked(conn, limits, now)
        picked = None
        # The cursor steps lazily: only the offers up to the first allowed one are read.
        for row in conn.execute(_CANDIDATES_SQL, {"labels": json.dumps(labels), "now": now}):
            if (row[3], row[4]) not in blocked:
                picked = row
                break
        if picked is None:
            return None
        run_id, task_id, attempt, label, agent, seq, token, fence = picked
        conn.execute(
            _TAKE_SQL,
            (owner, now + ttl_s, token + 1, run_id, task_id, attempt),
        )
        conn.execute("INSERT INTO task_starts (label, agent, at) VALUES (?, ?, ?)",
                     (label, agent, now))
        return TaskClaim(run_id, task_id, int(attempt), label, agent, owner, token + 1, int(seq),
                         int(fence))

    return _tx(conn, body)




def renew_task_tx(conn: sqlite3.Connection, claim: TaskClaim, ttl_s: float) -> None:
    """Extend the claim's expiry, or :class:`TaskClaimLostError` if it is not current."""
    if conn.execute(_RENEW_SQL, (time.time() + ttl_s, *claim_key(claim))).rowcount == 0:
        raise claim_lost(claim)


def post_fact_tx(conn: sqlite3.Connection, claim: TaskClaim, kind: str, data: bytes) -> int:
    """Insert the fact while the claim is current; its id."""
    def body(_now: float) -> int:
        if conn.execute(_CURRENT_SQL, claim_key(claim)).fetchone() is None:
            raise claim_lost(claim)
        cursor = conn.execute(
            "INSERT INTO task_facts (run_id, task_id, attempt, token, kind, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (claim.run_id, claim.task_id, claim.attempt, claim.token, kind, data),
        )
        return int(cursor.lastrowid or 0)

    return _tx(conn, body)


def task_facts_of(conn: sqlite3.Connection, run_id: str) -> list[TaskFact]:
    """The run's unanswered facts of current claims, in id order."""
    return [
        TaskFact(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], bytes(r[6]))
        for r in conn.execute(_FACTS_SQL, (run_id,))
    ]


def answer_tx(
    conn: sqlite3.Connection, run_id: str, answers: dict[int, bool], fence: int | None
) -> None:
    """Record the answers; an answered outcome ends its attempt (offer and step facts go)."""
    def body(now: float) -> None:
        if fence is not None:
            must_hold_the_fence(conn, run_id, fence)
        done = []
        for fact_id, answer in answers.items():
            row = conn.execute(_ANSWER_SQL, (int(answer), now, fact_id, run_id)).fetchone()
            if row is not None and row[0] == "outcome":
                done.append((run_id, row[1], row[2], fact_id))
        conn.executemany(_END_OFFER_SQL, [d[:3] for d in done])
        # The answered outcome stays a while as the executor's receipt.
        conn.executemany(_END_FACTS_SQL + " AND id != ?", done)
        conn.execute("DELETE FROM task_facts WHERE kind = 'outcome' AND answered_at < ?",
                     (now - RECEIPT_TTL_S,))

    _tx(conn, body)


def fact_answer(conn: sqlite3.Connection, fact_id: int, claim: TaskClaim) -> bool | None:
    """The fact's answer; None while unanswered; :class:`TaskClaimLostError` once lost."""
    row = conn.execute(_FACT_ANSWER_SQL, (*claim_key(claim), fact_id)).fetchone()
    return answer_of(row, claim, fact_id)


def withdraw_tx(
    conn: sqlite3.Connection, run_id: str, fence: int | None, keep: set[tuple[str, int]]
) -> None:
    """Delete the run's offers (and their facts) but those in ``keep``, fenced."""
    def body(_now: float) -> None:
        if fence is not None:
            must_hold_the_fence(conn, run_id, fence)
        rows = conn.execute(
            "SELECT task_id, attempt FROM task_offers WHERE run_id = ?", (run_id,)).fetchall()
        _delete_attempts(conn, run_id, [(r[0], r[1]) for r in rows if (r[0], r[1]) not in keep])

    _tx(conn, body)


def exchange_rows(conn: sqlite3.Connection, run_id: str | None) -> list[TaskExchangeRow]:
    """Every offer (of ``run_id``, or all), oldest offer first."""
    rows = conn.execute(_EXCHANGE_SQL, {"now": time.time(), "run_id": run_id})
    return [
        TaskExchangeRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], int(r[6]), int(r[7]))
        for r in rows
    ]


def acquire_slot_tx(
    conn: sqlite3.Connection, key: str, limit: int, holder: str, ttl_s: float
) -> bool:
    """Take (or renew) one of ``limit`` slots of ``key`` for ``holder``; False when all are held."""
    def body(now: float) -> bool:
        conn.execute("DELETE FROM flow_slots WHERE key = ? AND expires_at <= ?", (key, now))
        renewed = conn.execute(
            "UPDATE flow_slots SET expires_at = ? WHERE key = ? AND holder = ?",
            (now + ttl_s, key, holder),
        ).rowcount
        if renewed:
            return True
        held = conn.execute("SELECT count(*) FROM flow_slots WHERE key = ?", (key,)).fetchone()
        if held[0] >= limit:
            return False
        conn.execute("INSERT INTO flow_slots (key, holder, expires_at) VALUES (?, ?, ?)",
                     (key, holder, now + ttl_s))
        return True

    return _tx(conn, body)


def release_slot(conn: sqlite3.Connection, key: str, holder: str) -> None:
    """Give the holder's slot of ``key`` back, if it holds one."""
    conn.execute("DELETE FROM flow_slots WHERE key = ? AND holder = ?", (key, holder))


class SQLiteTasks(SQLiteRoundTrips):
    """The task exchange round trips of :class:`SQLiteEventStore` (a mixin).

    Writes go through the writer connection (one transaction each); reads
    through the reader, so polling executors never queue behind writes.
    """

    async def _offer_tasks(
        self, run_id: str, offers: list[TaskOffer], seq: int, fence: int | None
    ) -> None:
        await self._write(offer_tx, run_id, offers, seq, fence)

    async def _claim_task(
        self,
        owner: str,
        ttl_s: float,
        labels: list[str],
        limits: dict[tuple[str, str], AgentLimit],
    ) -> TaskClaim | None:
        return await self._write(claim_task_tx, owner, ttl_s, labels, limits)

    async def _renew_task_claim(self, claim: TaskClaim, ttl_s: float) -> None:
        await self._write(renew_task_tx, claim, ttl_s)

    async def _post_task_fact(self, claim: TaskClaim, kind: str, data: bytes) -> int:
        return await self._write(post_fact_tx, claim, kind, data)

    async def _task_facts(self, run_id: str) -> list[TaskFact]:
        return await self._call(self._reader, task_facts_of, run_id)

    async def _answer_task_facts(
        self, run_id: str, answers: dict[int, bool], fence: int | None
    ) -> None:
        await self._write(answer_tx, run_id, answers, fence)

    async def _task_fact_answer(self, fact_id: int, claim: TaskClaim) -> bool | None:
        return await self._call(self._reader, fact_answer, fact_id, claim)

    async def _withdraw_tasks(
        self, run_id: str, fence: int | None, keep: set[tuple[str, int]]
    ) -> None:
        await self._write(withdraw_tx, run_id, fence, keep)

    async def _task_exchange(self, run_id: str | None) -> list[TaskExchangeRow]:
        return await self._call(self._reader, exchange_rows, run_id)

    async def _acquire_slot(self, key: str, limit: int, holder: str, ttl_s: float) -> bool:
        return await self._write(acquire_slot_tx, key, limit, holder, ttl_s)

    async def _release_slot(self, key: str, holder: str) -> None:
        await self._write(release_slot, key, holder)
