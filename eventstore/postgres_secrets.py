"""The PostgreSQL round trips for the secret vault (a mixin of the PostgreSQL store)."""

from __future__ import annotations

from typing import Any, TypeVar

from .mixin_needs import PostgresRoundTrips

__all__ = ["PostgresSecrets"]

_T = TypeVar("_T")

_PUT_SQL = (
    "INSERT INTO {s}.run_secrets (ref, run_id, value) "
    "SELECT ref, $1, value FROM unnest($2::text[], $3::bytea[]) AS t(ref, value) "
    "ON CONFLICT (ref) DO NOTHING"
)
_GET_SQL = "SELECT ref, value FROM {s}.run_secrets WHERE ref = ANY($1::text[])"
_OF_RUN_SQL = "SELECT ref, value FROM {s}.run_secrets WHERE run_id = $1"
_ERASE_SQL = "DELETE FROM {s}.run_secrets WHERE run_id = $1"


class PostgresSecrets(PostgresRoundTrips):
    """PostgreSQL round trips for the secret vault."""


    def _secrets_sql(self, sql: str) -> str:
        return sql.format(s=f'"{self.schema}"')

    async def _put_secrets(self, run_id: str, values: dict[str, bytes]) -> None:
        async def body(conn: Any) -> None:
            await conn.execute(self._secrets_sql(_PUT_SQL), run_id, list(values),
                               list(values.values()))

        await self._call(body, run_id=run_id)

    async def _get_secrets(self, refs: list[str]) -> dict[str, bytes]:
        async def body(conn: Any) -> dict[str, bytes]:
            rows = await conn.fetch(self._secrets_sql(_GET_SQL), refs)
            return {row[0]: bytes(row[1]) for row in rows}

        return await self._call(body)

    async def _run_secrets(self, run_id: str) -> dict[str, bytes]:
        async def body(conn: Any) -> dict[str, bytes]:
            rows = await conn.fetch(self._secrets_sql(_OF_RUN_SQL), run_id)
            return {row[0]: bytes(row[1]) for row in rows}

        return await self._call(body, run_id=run_id)

    async def _erase_secrets(self, run_id: str) -> int:
        async def body(conn: Any) -> int:
            status: str = await conn.execute(self._secrets_sql(_ERASE_SQL), run_id)
            return int(status.rsplit(" ", 1)[-1])

        return await self._call(body, run_id=run_id)
