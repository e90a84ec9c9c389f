"""The Postgres round trips for state snapshots (a mixin of the Postgres store).

Each is one statement on a pooled connection (autocommitted); ``created_at``
is the database clock.

Example::

    await store.put_snapshot("r1", 2000, env.hash, 1, payload)
"""

from __future__ import annotations

from typing import Any, TypeVar

from .core_snapshots import StoredSnapshot
from .mixin_needs import PostgresRoundTrips

__all__ = ["PostgresSnapshots"]

_T = TypeVar("_T")

_SQL = {
    "put": """
        INSERT INTO {s}.run_snapshots (run_id, seq, hash, format, state)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (run_id, seq) DO UPDATE SET hash = excluded.hash,
            format = excluded.format, state = excluded.state, created_at = now()
    """,
    "latest": """
        SELECT run_id, seq, hash, format, state, created_at FROM {s}.run_snapshots
        WHERE run_id = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1
    """,
    "all": """
        SELECT run_id, seq, hash, format, state, created_at FROM {s}.run_snapshots
        WHERE run_id = $1 ORDER BY seq
    """,
    "prune": """
        DELETE FROM {s}.run_snapshots WHERE run_id = $1 AND seq NOT IN (
            SELECT seq FROM {s}.run_snapshots WHERE run_id = $1 ORDER BY seq DESC LIMIT $2)
    """,
}


def _snapshot(row: Any) -> StoredSnapshot:
    run_id, seq, hash_, format_, state, created_at = row
    return StoredSnapshot(run_id, int(seq), hash_, int(format_), bytes(state), created_at)


async def _execute(conn: Any, sql: str, *args: object) -> str:
    status: str = await conn.execute(sql, *args)
    return status


async def _fetch(conn: Any, sql: str, *args: object) -> list[Any]:
    rows: list[Any] = await conn.fetch(sql, *args)
    return rows


class PostgresSnapshots(PostgresRoundTrips):
    """Postgres round trips for state snapshots."""


    def _snapshot_sql(self, name: str) -> str:
        # Formatted on first use and kept: the store's constructor knows nothing of it.
        cache: dict[str, str] | None = getattr(self, "_snapshot_sql_cache", None)
        if cache is None:
            s = f'"{self.schema}"'
            cache = {key: sql.format(s=s) for key, sql in _SQL.items()}
            self._snapshot_sql_cache = cache
        return cache[name]

    async def _put_snapshot(  # noqa: PLR0917 - the row's columns, in their order
        self, run_id: str, seq: int, hash_: str, format_: int, state: bytes, keep: int | None
    ) -> None:
        put, prune = self._snapshot_sql("put"), self._snapshot_sql("prune")

        async def run(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(put, run_id, seq, hash_, format_, state)
                if keep is not None:
                    await conn.execute(prune, run_id, keep)

        await self._call(run, run_id=run_id)

    async def _latest_snapshot(self, run_id: str, at_most: int) -> StoredSnapshot | None:
        rows = await self._call(_fetch, self._snapshot_sql("latest"), run_id, at_most,
                                run_id=run_id)
        return _snapshot(rows[0]) if rows else None

    async def _snapshots(self, run_id: str) -> list[StoredSnapshot]:
        rows = await self._call(_fetch, self._snapshot_sql("all"), run_id, run_id=run_id)
        return [_snapshot(row) for row in rows]

    async def _prune_snapshots(self, run_id: str, keep: int) -> int:
        status = await self._call(_execute, self._snapshot_sql("prune"), run_id, keep,
                                  run_id=run_id)
        # asyncpg answers "DELETE <count>".
        return int(status.rsplit(" ", 1)[-1])
