"""The Postgres round trips for side-effect claims of fork families (a store mixin).

A claim is ``INSERT ... ON CONFLICT DO NOTHING RETURNING``: the primary key
(key, attempt) lets exactly one concurrent claimer insert; a loser's insert
waits for the winner's commit and returns no row. The holder is then read in
a second statement, which (read committed) sees the winner's row: one round
trip for the common case, two when the claim is held.

Example::

    claim = await store.claim_effect(key, 1, run_id="fork-a", task_id="book")
"""

from __future__ import annotations

from typing import Any, TypeVar

from .core_effects import EffectClaim
from .mixin_needs import PostgresRoundTrips

__all__ = ["PostgresEffectClaims"]

_T = TypeVar("_T")

_SQL = {
    "register": "INSERT INTO {s}.fork_families (key_base) VALUES ($1) "
                "ON CONFLICT (key_base) DO NOTHING",
    "family": "SELECT EXISTS (SELECT 1 FROM {s}.fork_families WHERE key_base = $1)",
    "claim": "INSERT INTO {s}.effect_claims (key, attempt, run_id, task_id) "
             "VALUES ($1, $2, $3, $4) ON CONFLICT (key, attempt) DO NOTHING RETURNING run_id",
    "holder": "SELECT run_id, task_id FROM {s}.effect_claims WHERE key = $1 AND attempt = $2",
    "claims": "SELECT key, attempt, run_id, task_id FROM {s}.effect_claims "
              "WHERE ($1::text IS NULL OR key = $1) ORDER BY key, attempt",
}


async def _claim(  # noqa: PLR0917 - positional: it crosses _call as *args
    conn: Any, sql: dict[str, str], key: str, attempt: int, run_id: str, task_id: str
) -> EffectClaim:
    if await conn.fetchval(sql["claim"], key, attempt, run_id, task_id) is not None:
        return EffectClaim(key, attempt, run_id, task_id, taken=True)
    row = await conn.fetchrow(sql["holder"], key, attempt)
    return EffectClaim(key, attempt, str(row[0]), str(row[1]))


class PostgresEffectClaims(PostgresRoundTrips):
    """Postgres round trips for side-effect claims of fork families."""

    _effect_sql_cache: dict[str, str] | None = None

    def _effect_sql(self) -> dict[str, str]:
        # Formatted on first use: the store's __init__ formats only its own statements.
        if self._effect_sql_cache is None:
            s = f'"{self.schema}"'
            self._effect_sql_cache = {name: sql.format(s=s) for name, sql in _SQL.items()}
        return self._effect_sql_cache

    async def _register_fork_family(self, key_base: str) -> None:
        await self._call(_execute, self._effect_sql()["register"], key_base)

    async def _has_fork_family(self, key_base: str) -> bool:
        return bool(await self._call(_fetchval, self._effect_sql()["family"], key_base))

    async def _claim_effect(
        self, key: str, attempt: int, run_id: str, task_id: str
    ) -> EffectClaim:
        return await self._call(_claim, self._effect_sql(), key, attempt, run_id, task_id)

    async def _effect_claims(self, key: str | None) -> list[EffectClaim]:
        rows = await self._call(_fetch, self._effect_sql()["claims"], key)
        return [EffectClaim(str(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]


async def _execute(conn: Any, sql: str, *args: object) -> None:
    await conn.execute(sql, *args)


async def _fetchval(conn: Any, sql: str, *args: object) -> Any:
    return await conn.fetchval(sql, *args)


async def _fetch(conn: Any, sql: str, *args: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(sql, *args)
    return rows
