"""The SQLite side of the worker pool: claims and the workers registry, on this machine's clock.

Plain synchronous :mod:`sqlite3`, run through ``_one_hop`` on the writer's
thread like :mod:`ledgerflow.eventstore.sqlite_rows`. A claim is ONE
``BEGIN IMMEDIATE`` transaction (pick, then lease): SQLite lets one writer in
at a time across every process of the file, so two claimers cannot both see
the same run free.

Example::

    claim = claim_tx(raw_connection, "worker-1", 30.0, ["queued"], None)
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import defaultdict
from typing import Any

from .pool import Claim, WorkerInfo
from .sqlite_rows import rollback, take_lease_row

__all__ = [
    "claim_tx",
    "heartbeat_worker",
    "register_worker",
    "unregister_worker",
    "workers_of",
]

# json_each keeps the statement fixed whatever the number of statuses.
# runs_by_status serves the status filter; ties on updated_at go by run id.
_PICK_SQL = """
SELECT r.run_id, r.status, r.label FROM runs r LEFT JOIN leases l ON l.run_id = r.run_id
WHERE r.status IN (SELECT value FROM json_each(:statuses))
  AND (:labels IS NULL OR r.label IN (SELECT value FROM json_each(:labels)))
  AND (l.run_id IS NULL OR l.expires_at <= :now)
ORDER BY r.updated_at, r.run_id
LIMIT 1
"""
_REGISTER_SQL = """
INSERT INTO workers (worker_id, info, started_at, heartbeat_at, expires_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (worker_id) DO UPDATE SET info = excluded.info, started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at
"""
_HEARTBEAT_SQL = "UPDATE workers SET heartbeat_at = ?, expires_at = ? WHERE worker_id = ?"
_UNREGISTER_SQL = "DELETE FROM workers WHERE worker_id = ?"
_WORKERS_SQL = (
    "SELECT worker_id, info, started_at, heartbeat_at, expires_at FROM workers "
    "WHERE expires_at > ? ORDER BY started_at, worker_id"
)
_HELD_SQL = (
    "SELECT l.owner, l.run_id FROM leases l JOIN workers w ON w.worker_id = l.owner "
    "WHERE l.expires_at > ? ORDER BY l.run_id"
)


def claim_tx(
    conn: sqlite3.Connection,
    owner: str,
    ttl_s: float,
    statuses: list[str],
    labels: list[str] | None,
) -> Claim | None:
    """Pick the oldest-updated free run in ``statuses`` (and ``labels``) and lease it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        now = time.time()
        row = conn.execute(
            _PICK_SQL,
            {
                "statuses": json.dumps(statuses),
                "labels": None if labels is None else json.dumps(labels),
                "now": now,
            },
        ).fetchone()
        if row is None:
            conn.execute("ROLLBACK")
            return None
        run_id, status, label = row
        fence = take_lease_row(conn, run_id, owner, ttl_s, now)
        if fence is None:  # pragma: no cover - the pick saw no live lease under the same lock
            conn.execute("ROLLBACK")
            return None
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return Claim(str(run_id), fence, str(status), str(label))


def register_worker(conn: sqlite3.Connection, worker_id: str, info: str, ttl_s: float) -> None:
    """Insert or replace the worker's row: started and renewed now, alive for ``ttl_s``."""
    now = time.time()
    conn.execute(_REGISTER_SQL, (worker_id, info, now, now, now + ttl_s))


def heartbeat_worker(conn: sqlite3.Connection, worker_id: str, ttl_s: float) -> bool:
    """Renew the worker's row; False when there is none (it was removed)."""
    now = time.time()
    return conn.execute(_HEARTBEAT_SQL, (now, now + ttl_s, worker_id)).rowcount > 0


def unregister_worker(conn: sqlite3.Connection, worker_id: str) -> None:
    """Remove the worker's row, if any."""
    conn.execute(_UNREGISTER_SQL, (worker_id,))


def workers_of(conn: sqlite3.Connection, include_gone_s: float) -> list[WorkerInfo]:
    """The workers alive, or gone less than ``include_gone_s`` ago, with the runs they hold."""
    conn.execute("BEGIN")  # one snapshot for both queries
    try:
        now = time.time()
        rows = conn.execute(_WORKERS_SQL, (now - include_gone_s,)).fetchall()
        held: dict[str, list[str]] = defaultdict(list)
        for owner, run_id in conn.execute(_HELD_SQL, (now,)):
            held[owner].append(run_id)
    finally:
        conn.execute("COMMIT")
    return [_worker(row, now, held) for row in rows]


def _worker(row: Any, now: float, held: dict[str, list[str]]) -> WorkerInfo:
    worker_id, info, started_at, heartbeat_at, expires_at = row
    alive = expires_at > now
    return WorkerInfo(
        worker_id=worker_id,
        info=json.loads(info),
        started_at=float(started_at),
        heartbeat_at=float(heartbeat_at),
        expires_at=float(expires_at),
        alive=alive,
        runs=tuple(held.get(worker_id, ())),
    )
