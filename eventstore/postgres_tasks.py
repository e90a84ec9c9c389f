"""The PostgreSQL side of the task exchange: offers, claims, facts and answers, flow slots.

:class:`PostgresTasks` is mixed into
:class:`ledgerflow.eventstore.postgres.PostgresEventStore` and supplies the
``_x`` round trips :class:`ledgerflow.eventstore.core_tasks.TaskExchangeCore`
asks for. Expiry is judged on the database clock, as for leases. Design:

- A claim picks the oldest free offer ``FOR UPDATE SKIP LOCKED``, so
  concurrent claimers pass over each other's picks. When the pick's
  (workflow, agent) has a limit, the claimer then takes a transaction-scoped
  advisory lock of that pair and counts its live claims and last-minute
  starts: claimers of one limited agent take turns, unlimited ones never
  wait. A pick over its limit ends its transaction (releasing the row and
  the lock) and the claim picks again without that pair, so a transaction
  waits for at most one advisory lock, and never while holding another.
- Fenced writes lock the run's ``leases`` row FOR SHARE first, as a fenced
  append does (:func:`hold_fence`), so a takeover waits for them.
- A fact is inserted only while its offer row (locked FOR SHARE) still
  carries the claim's token and owner.

Example::

    claim = await store.claim_task("w1", 30, workflows=["travel"])
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import LeaseLostError
from .mixin_needs import PostgresRoundTrips
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

__all__ = ["POSTGRES_TASK_TABLES", "PostgresTasks", "hold_fence"]

POSTGRES_TASK_TABLES = (
    # offered_order: the claim order (oldest offer first); a re-offer keeps it.
    """
    CREATE TABLE {schema}.task_offers (
        run_id           text        NOT NULL,
        task_id          text        NOT NULL,
        attempt          bigint      NOT NULL CHECK (attempt >= 1),
        label            text        NOT NULL,
        agent            text        NOT NULL,
        seq              bigint      NOT NULL,
        fence            bigint      NOT NULL DEFAULT 0,
        offered_order    bigint      GENERATED ALWAYS AS IDENTITY,
        claimed_by       text,
        claim_expires_at timestamptz,
        token            bigint      NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, task_id, attempt)
    )
    """,
    "CREATE INDEX task_offers_to_claim ON {schema}.task_offers (label, offered_order)",
    "CREATE INDEX task_offers_by_agent ON {schema}.task_offers (label, agent, claim_expires_at)",
    """
    CREATE TABLE {schema}.task_facts (
        id          bigserial   PRIMARY KEY,
        run_id      text        NOT NULL,
        task_id     text        NOT NULL,
        attempt     bigint      NOT NULL,
        token       bigint      NOT NULL,
        kind        text        NOT NULL,
        data        bytea       NOT NULL,
        answer      boolean,
        answered_at timestamptz
    )
    """,
    "CREATE INDEX task_facts_by_offer ON {schema}.task_facts (run_id, task_id, attempt)",
    "CREATE INDEX task_facts_receipts ON {schema}.task_facts (answered_at) "
    "WHERE kind = 'outcome'",
    """
    CREATE TABLE {schema}.task_starts (
        label text        NOT NULL,
        agent text        NOT NULL,
        at    timestamptz NOT NULL
    )
    """,
    "CREATE INDEX task_starts_by_agent ON {schema}.task_starts (label, agent, at)",
    "CREATE INDEX task_starts_by_at ON {schema}.task_starts (at)",
    """
    CREATE TABLE {schema}.flow_slots (
        key        text        NOT NULL,
        holder     text        NOT NULL,
        expires_at timestamptz NOT NULL,
        PRIMARY KEY (key, holder)
    )
    """,
)
"""Migration 3 of the PostgreSQL schema (see :data:`ledgerflow.eventstore.schema`)."""

_T = TypeVar("_T")

# Advisory lock classes (the first int4 key), apart from opening's "RLDG".
_LIMIT_LOCK = 0x4C465441  # "LFTA": one (workflow, agent) limit
_SLOT_LOCK = 0x4C465453  # "LFTS": one flow slot key
_CLAIM_TRIES = 5
"""Re-picks after a pick lost to a concurrent claimer, beyond one per limited agent."""

_SQL = {
    "offer": """
        INSERT INTO {s}.task_offers (run_id, task_id, attempt, label, agent, seq, fence)
        SELECT $1::text, u.task_id, u.attempt, u.label, u.agent, $6::bigint, $7::bigint
        FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[]) WITH ORDINALITY
            AS u(task_id, attempt, label, agent, n)
        ORDER BY u.n
        ON CONFLICT (run_id, task_id, attempt) DO UPDATE SET seq = excluded.seq,
            fence = excluded.fence
    """,
    "pick": """
        SELECT run_id, task_id, attempt, label, agent, seq, fence FROM {s}.task_offers o
        WHERE o.label = ANY($1::text[])
          AND (o.claimed_by IS NULL OR o.claim_expires_at <= clock_timestamp())
          AND NOT EXISTS (SELECT 1 FROM unnest($2::text[], $3::text[]) AS b(label, agent)
                          WHERE b.label = o.label AND b.agent = o.agent)
        ORDER BY o.offered_order
        LIMIT 1
        FOR UPDATE OF o SKIP LOCKED
    """,
    "counts": """
        SELECT (SELECT count(*) FROM {s}.task_offers WHERE label = $1 AND agent = $2
                AND claimed_by IS NOT NULL AND claim_expires_at > clock_timestamp()),
               (SELECT count(*) FROM {s}.task_starts WHERE label = $1 AND agent = $2
                AND at > clock_timestamp() - interval '60 seconds')
    """,
    "take": """
        UPDATE {s}.task_offers SET claimed_by = $4, token = token + 1,
            claim_expires_at = clock_timestamp() + make_interval(secs => $5)
        WHERE run_id = $1 AND task_id = $2 AND attempt = $3 RETURNING token
    """,
    "start": "INSERT INTO {s}.task_starts (label, agent, at) VALUES ($1, $2, clock_timestamp())",
    # SKIP LOCKED: two pruners never wait on each other (nor deadlock).
    "prune": """
        DELETE FROM {s}.task_starts WHERE ctid IN (
            SELECT ctid FROM {s}.task_starts
            WHERE at <= clock_timestamp() - interval '60 seconds'
            LIMIT 1000 FOR UPDATE SKIP LOCKED)
    """,
    "renew": """
        UPDATE {s}.task_offers
        SET claim_expires_at = clock_timestamp() + make_interval(secs => $6)
        WHERE run_id = $1 AND task_id = $2 AND attempt = $3
            AND token = $4 AND claimed_by = $5 RETURNING 1
    """,
    "post": """
        WITH cur AS (
            SELECT 1 FROM {s}.task_offers
            WHERE run_id = $1 AND task_id = $2 AND attempt = $3
                AND token = $4 AND claimed_by = $5 FOR SHARE)
        INSERT INTO {s}.task_facts (run_id, task_id, attempt, token, kind, data)
        SELECT $1, $2, $3, $4, $6::text, $7::bytea FROM cur RETURNING id
    """,
    "facts": """
        SELECT f.id, f.run_id, f.task_id, f.attempt, f.token, f.kind, f.data
        FROM {s}.task_facts f JOIN {s}.task_offers o ON o.run_id = f.run_id
            AND o.task_id = f.task_id AND o.attempt = f.attempt AND o.token = f.token
        WHERE f.run_id = $1 AND f.answer IS NULL ORDER BY f.id
    """,
    "answer": """
        UPDATE {s}.task_facts AS f SET answer = u.answer, answered_at = clock_timestamp()
        FROM unnest($2::bigint[], $3::boolean[]) AS u(id, answer)
        WHERE f.id = u.id AND f.run_id = $1 AND f.answer IS NULL
        RETURNING f.id, f.kind, f.task_id, f.attempt
    """,
    "end_offers": """
        DELETE FROM {s}.task_offers WHERE run_id = $1
        AND (task_id, attempt) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
    """,
    # The answered outcomes ($4) stay a while as their executors' receipts.
    "end_facts": """
        DELETE FROM {s}.task_facts WHERE run_id = $1
        AND (task_id, attempt) IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
        AND NOT id = ANY($4::bigint[])
    """,
    "receipts": """
        DELETE FROM {s}.task_facts WHERE id IN (
            SELECT id FROM {s}.task_facts WHERE kind = 'outcome'
            AND answered_at < clock_timestamp() - make_interval(secs => $1)
            LIMIT 1000 FOR UPDATE SKIP LOCKED)
    """,
    "fact_answer": """
        SELECT f.answer, f.run_id, f.task_id, f.attempt, f.token,
               EXISTS (SELECT 1 FROM {s}.task_offers
                       WHERE run_id = $1 AND task_id = $2 AND attempt = $3
                         AND token = $4 AND claimed_by = $5)
        FROM (SELECT 1) AS d LEFT JOIN {s}.task_facts f ON f.id = $6
    """,
    "withdraw": """
        DELETE FROM {s}.task_offers WHERE run_id = $1
        AND (task_id, attempt) NOT IN (SELECT * FROM unnest($2::text[], $3::bigint[]))
        RETURNING task_id, attempt
    """,
    "exchange": """
        SELECT run_id, task_id, attempt, label, agent,
               CASE WHEN claim_expires_at > clock_timestamp() THEN claimed_by END, token, seq
        FROM {s}.task_offers WHERE $1::text IS NULL OR run_id = $1 ORDER BY offered_order
    """,
    "lock": "SELECT pg_advisory_xact_lock($1::int4, hashtext($2))",
    "slot_expire": "DELETE FROM {s}.flow_slots WHERE key = $1 AND expires_at <= clock_timestamp()",
    "slot_renew": """
        UPDATE {s}.flow_slots SET expires_at = clock_timestamp() + make_interval(secs => $3)
        WHERE key = $1 AND holder = $2 RETURNING 1
    """,
    "slot_count": "SELECT count(*) FROM {s}.flow_slots WHERE key = $1",
    "slot_take": """
        INSERT INTO {s}.flow_slots (key, holder, expires_at)
        VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3))
    """,
    "slot_release": "DELETE FROM {s}.flow_slots WHERE key = $1 AND holder = $2",
}


async def hold_fence(conn: Any, fence_sql: str, run_id: str, fence: int) -> None:
    """Inside a transaction: lock the run's leases row FOR SHARE and check its live fence.

    Raises :class:`LeaseLostError` (the caller's transaction then rolls back).
    """
    row = await conn.fetchrow(fence_sql, run_id)
    if row is None or not row[1] or row[2] != fence:
        holder = str(row[0]) if row is not None and row[1] else None
        raise LeaseLostError(run_id, fence, holder, None if row is None else int(row[2]))




def _over(limit: AgentLimit, live: int, started: int) -> bool:
    return (limit.max_concurrent is not None and live >= limit.max_concurrent) or (
        limit.per_minute is not None and started >= limit.per_minute)


class PostgresTasks(PostgresRoundTrips):
    """The task exchange round trips of :class:`PostgresEventStore` (a mixin)."""

    _fence_sql: str
    _task_sql: dict[str, str]

    def _format_task_sql(self, s: str) -> None:
        self._task_sql = {name: sql.format(s=s) for name, sql in _SQL.items()}

    def _lock_name(self, *parts: str) -> str:
        # JSON keeps ("a b", "c") and ("a", "b c") apart; the schema keeps stores apart.
        return json.dumps([self.schema, *parts])

    async def _fenced(
        self, run_id: str, fence: int | None, body: Callable[[Any], Awaitable[_T]]
    ) -> _T:
        async def run(conn: Any) -> _T:
            async with conn.transaction():
                if fence is not None:
                    await hold_fence(conn, self._fence_sql, run_id, fence)
                return await body(conn)

        return await self._call(run)

    async def _offer_tasks(
        self, run_id: str, offers: list[TaskOffer], seq: int, fence: int | None
    ) -> None:
        async def body(conn: Any) -> None:
            await conn.execute(
                self._task_sql["offer"], run_id, [o.task_id for o in offers],
                [o.attempt for o in offers], [o.label for o in offers],
                [o.agent for o in offers], seq, fence or 0,
            )

        await self._fenced(run_id, fence, body)

    async def _claim_once(  # noqa: PLR0917 - positional: it crosses _call as *args
        self,
        conn: Any,
        owner: str,
        ttl_s: float,
        labels: list[str],
        limits: dict[tuple[str, str], AgentLimit],
        blocked: list[tuple[str, str]],
    ) -> TaskClaim | tuple[str, str] | None:
        """One claim transaction: the claim, the pair found over its limit, or None."""
        sql = self._task_sql
        async with conn.transaction():
            row = await conn.fetchrow(
                sql["pick"], labels, [b[0] for b in blocked], [b[1] for b in blocked])
            if row is None:
                return None
            run_id, task_id, attempt, label, agent, seq, fence = row
            limit = limits.get((label, agent))
            if limit is not None:
                await conn.execute(sql["lock"], _LIMIT_LOCK, self._lock_name(label, agent))
                live, started = await conn.fetchrow(sql["counts"], label, agent)
                if _over(limit, live, started):
                    return (label, agent)
            token = await conn.fetchval(sql["take"], run_id, task_id, attempt, owner, ttl_s)
            await conn.execute(sql["start"], label, agent)
            await conn.execute(sql["prune"])
        return TaskClaim(run_id, task_id, int(attempt), label, agent, owner, int(token), int(seq),
                         int(fence))

    async def _claim_task(
        self,
        owner: str,
        ttl_s: float,
        labels: list[str],
        limits: dict[tuple[str, str], AgentLimit],
    ) -> TaskClaim | None:
        blocked: list[tuple[str, str]] = []
        for _ in range(len(limits) + _CLAIM_TRIES):
            got = await self._call(self._claim_once, owner, ttl_s, labels, limits, blocked)
            if not isinstance(got, tuple):
                return got
            blocked.append(got)
        return None

    async def _renew_task_claim(self, claim: TaskClaim, ttl_s: float) -> None:
        async def run(conn: Any) -> Any:
            return await conn.fetchval(self._task_sql["renew"], *claim_key(claim), ttl_s)

        if await self._call(run) is None:
            raise claim_lost(claim)

    async def _post_task_fact(self, claim: TaskClaim, kind: str, data: bytes) -> int:
        async def run(conn: Any) -> Any:
            return await conn.fetchval(self._task_sql["post"], *claim_key(claim), kind, data)

        fact_id = await self._call(run)
        if fact_id is None:
            raise claim_lost(claim)
        return int(fact_id)

    async def _task_facts(self, run_id: str) -> list[TaskFact]:
        async def run(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(self._task_sql["facts"], run_id)
            return rows

        return [
            TaskFact(int(r[0]), r[1], r[2], int(r[3]), int(r[4]), r[5], bytes(r[6]))
            for r in await self._call(run)
        ]

    async def _answer_task_facts(
        self, run_id: str, answers: dict[int, bool], fence: int | None
    ) -> None:
        sql = self._task_sql

        async def body(conn: Any) -> None:
            rows = await conn.fetch(sql["answer"], run_id, list(answers), list(answers.values()))
            done = [r for r in rows if r[1] == "outcome"]
            if done:
                tasks, attempts = [r[2] for r in done], [r[3] for r in done]
                await conn.execute(sql["end_offers"], run_id, tasks, attempts)
                await conn.execute(sql["end_facts"], run_id, tasks, attempts, [r[0] for r in done])
            await conn.execute(sql["receipts"], RECEIPT_TTL_S)

        await self._fenced(run_id, fence, body)

    async def _task_fact_answer(self, fact_id: int, claim: TaskClaim) -> bool | None:
        async def run(conn: Any) -> Any:
            return await conn.fetchrow(self._task_sql["fact_answer"], *claim_key(claim), fact_id)

        return answer_of(await self._call(run), claim, fact_id)

    async def _withdraw_tasks(
        self, run_id: str, fence: int | None, keep: set[tuple[str, int]]
    ) -> None:
        sql = self._task_sql

        async def body(conn: Any) -> None:
            gone = await conn.fetch(
                sql["withdraw"], run_id, [k[0] for k in keep], [k[1] for k in keep])
            if gone:
                # A new statement: it also sees facts posted while the delete waited.
                await conn.execute(
                    sql["end_facts"], run_id, [g[0] for g in gone], [g[1] for g in gone], [])

        await self._fenced(run_id, fence, body)

    async def _task_exchange(self, run_id: str | None) -> list[TaskExchangeRow]:
        async def run(conn: Any) -> list[Any]:
            rows: list[Any] = await conn.fetch(self._task_sql["exchange"], run_id)
            return rows

        return [
            TaskExchangeRow(r[0], r[1], int(r[2]), r[3], r[4], r[5], int(r[6]), int(r[7]))
            for r in await self._call(run)
        ]

    async def _acquire_slot(self, key: str, limit: int, holder: str, ttl_s: float) -> bool:
        sql = self._task_sql

        async def run(conn: Any) -> bool:
            async with conn.transaction():
                await conn.execute(sql["lock"], _SLOT_LOCK, self._lock_name(key))
                await conn.execute(sql["slot_expire"], key)
                if await conn.fetchval(sql["slot_renew"], key, holder, ttl_s) is not None:
                    return True
                if await conn.fetchval(sql["slot_count"], key) >= limit:
                    return False
                await conn.execute(sql["slot_take"], key, holder, ttl_s)
                return True

        return await self._call(run)

    async def _release_slot(self, key: str, holder: str) -> None:
        async def run(conn: Any) -> None:
            await conn.execute(self._task_sql["slot_release"], key, holder)

        await self._call(run)
