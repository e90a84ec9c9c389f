"""A sink that checks fencing tokens, as a system that can check one would (issue 12, scenario 7).

``write(key, token)`` is one compare-and-set: the sink keeps, per key, the
highest token it has accepted, and refuses a write whose token is lower. The
first accepted write of a key applies the effect; a later one with a token at
least as high is the same effect under a newer owner (it moves the token,
it does not apply again). Every call is also logged (``fenced_calls``), with
the writer's pid, so a test can tell which process was refused.

The naive sink of the same trials is :class:`rel_sink.Sink` (``perform_raw``):
it counts every performance by idempotency key, the way a system that takes
no token sees a late call.

Example::

    sink = FencedSink("/tmp/effects.db")
    await sink.create()
    assert await sink.write("k1", "r1", 2_000_000) is True     # applied under token 2e6
    assert await sink.write("k1", "r1", 1_000_000) is False    # a stale owner: refused
    assert (await sink.state("k1")).token == 2_000_000
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import Any, ClassVar

from rel_sink import SinkStore, qmarks

__all__ = ["FencedCall", "FencedSink", "FencedState"]

_TABLES = (
    # writes: accepted writes of the key (1 = applied once, more = re-asserted by newer owners).
    "CREATE TABLE IF NOT EXISTS fenced_state (key TEXT PRIMARY KEY, token BIGINT NOT NULL, "
    "pid INTEGER NOT NULL, writes INTEGER NOT NULL)",
    # what: "enter" (the agent began its call), "accepted" or "refused".
    "CREATE TABLE IF NOT EXISTS fenced_calls (n BIGINT NOT NULL, run_id TEXT NOT NULL, "
    "key TEXT NOT NULL, token BIGINT NOT NULL, pid INTEGER NOT NULL, what TEXT NOT NULL)",
)
# The compare-and-set: insert, or move the token up; nothing (no row back) if it is lower.
_CAS = ("INSERT INTO {state} (key, token, pid, writes) VALUES ($1, $2, $3, 1) "
        "ON CONFLICT (key) DO UPDATE SET token = excluded.token, pid = excluded.pid, "
        "writes = {state}.writes + 1 WHERE {state}.token <= excluded.token RETURNING token")
# n orders the calls: one counter for both backends, taken inside the call's own transaction.
_LOG = ("INSERT INTO {calls} SELECT coalesce(max(n), 0) + 1, $1, $2, $3, $4, $5 FROM {calls}")


@dataclass(frozen=True, slots=True)
class FencedState:
    """What the sink holds for a key: the newest accepted token, by whom, how many writes."""

    key: str
    token: int
    pid: int
    writes: int


@dataclass(frozen=True, slots=True)
class FencedCall:
    """One logged call (a row of ``fenced_calls``), in the order the sink saw them."""

    n: int
    run_id: str
    key: str
    token: int
    pid: int
    what: str


@dataclass(frozen=True, slots=True)
class FencedSink(SinkStore):
    """A system that checks fencing tokens: the highest seen per key wins."""

    TABLES: ClassVar[tuple[str, ...]] = _TABLES

    def _sql(self, template: str) -> str:
        sql = template.format(state=self._t("fenced_state"), calls=self._t("fenced_calls"))
        return sql if self.on_postgres else qmarks(sql)

    async def enter(self, key: str, run_id: str, token: int) -> None:
        """Log that an agent began its call with ``token`` (no effect yet)."""
        await self._call(key, run_id, token, write=False)

    async def write(self, key: str, run_id: str, token: int) -> bool:
        """Apply the effect of ``key`` under ``token``; False if a higher token was seen."""
        return await self._call(key, run_id, token, write=True)

    async def state(self, key: str) -> FencedState | None:
        """The key's newest accepted write, or None if none was."""
        rows = await self._fetch(self._sql(
            "SELECT key, token, pid, writes FROM {state} WHERE key = $1"), key)
        if not rows:
            return None
        r = rows[0]
        return FencedState(str(r[0]), int(r[1]), int(r[2]), int(r[3]))

    async def calls(self, run_id: str) -> list[FencedCall]:
        """Every logged call of one run, in the sink's order."""
        rows = await self._fetch(self._sql(
            "SELECT n, run_id, key, token, pid, what FROM {calls} WHERE run_id = $1 "
            "ORDER BY n"), run_id)
        return [FencedCall(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4]), str(r[5]))
                for r in rows]

    # -- backends ---------------------------------------------------------

    async def _call(self, key: str, run_id: str, token: int, *, write: bool) -> bool:
        if not self.on_postgres:
            return await asyncio.to_thread(self._sqlite_call, key, run_id, token, write)
        conn = await self._pg()
        try:
            async with conn.transaction():
                # One caller at a time: the log's counter and the verdict stay in one order.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('fenced_calls'))")
                accepted = True
                if write:
                    accepted = await conn.fetchval(
                        self._sql(_CAS), key, token, os.getpid()) is not None
                what = "enter" if not write else "accepted" if accepted else "refused"
                await conn.execute(self._sql(_LOG), run_id, key, token, os.getpid(), what)
                return accepted
        finally:
            await conn.close()

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        if not self.on_postgres:
            return await asyncio.to_thread(self._sqlite_fetch, sql, args)
        conn = await self._pg()
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    def _sqlite_call(self, key: str, run_id: str, token: int, write: bool) -> bool:
        with contextlib.closing(self._sqlite()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                accepted = True
                if write:
                    accepted = conn.execute(
                        self._sql(_CAS), (key, token, os.getpid())).fetchone() is not None
                what = "enter" if not write else "accepted" if accepted else "refused"
                conn.execute(self._sql(_LOG), (run_id, key, token, os.getpid(), what))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return accepted

    def _sqlite_fetch(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with contextlib.closing(self._sqlite()) as conn:
            return conn.execute(sql, args).fetchall()
