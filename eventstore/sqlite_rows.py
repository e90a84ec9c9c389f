"""The SQL of the SQLite backend and the work it runs on the connection's thread.

Everything here is plain, synchronous :mod:`sqlite3`, called through
``_one_hop`` in :mod:`ledgerflow.eventstore.sqlite`. Every transaction is
rolled back before an error leaves its function, so the connection is never
left inside a failed transaction (a full disk must not keep the next
``release_lease`` from running).

Example::

    envelopes = append_tx(raw_connection, batch)
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from datetime import datetime
from typing import Any

from .envelope import GENESIS_HASH, Envelope
from .errors import EventUnreadableError, LeaseLostError
from .rules import Batch, chain_batch, must_expect_the_last_seq

__all__ = [
    "LAST_SQL",
    "MATCH_RUNS_SQL",
    "RELEASE_SQL",
    "RUNS_BY_STATUS_SQL",
    "RUNS_SQL",
    "RUN_SQL",
    "append_tx",
    "fetch_envelopes",
    "lease_of",
    "lease_tx",
    "must_hold_the_fence",
    "next_fence",
    "query",
    "rollback",
    "take_lease_row",
]

LAST_SQL = "SELECT seq, hash FROM events WHERE run_id = ? ORDER BY seq DESC LIMIT 1"
_INSERT_SQL = (
    "INSERT INTO events (run_id, seq, type, at, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_RUN_SQL = """
    INSERT INTO runs (run_id, status, label, created_at, updated_at, last_seq)
    VALUES (:run_id, coalesce(:status, ''), coalesce(:label, ''), :at, :at, :seq)
    ON CONFLICT (run_id) DO UPDATE SET
        status = coalesce(:status, runs.status),
        label = coalesce(:label, runs.label),
        updated_at = excluded.updated_at,
        last_seq = excluded.last_seq
"""
# CAST(... AS BLOB) hands back the stored UTF-8 bytes without a decode/encode in Python.
_READ_SQL = (
    "SELECT seq, type, at, CAST(data AS BLOB), prev_hash, hash FROM events "
    "WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
# The slow path after a row failed to decode: every text column as bytes.
_RAW_READ_SQL = (
    "SELECT seq, CAST(type AS BLOB), CAST(at AS BLOB), CAST(prev_hash AS BLOB), "
    "CAST(hash AS BLOB) FROM events WHERE run_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
)
# The owner column is the live lease holder (expiry judged at the bound time :now).
_SUMMARY = (
    "SELECT r.run_id, r.status, r.label, r.created_at, r.updated_at, r.last_seq, "
    "CASE WHEN l.expires_at > :now THEN l.owner END "
    "FROM runs r LEFT JOIN leases l ON l.run_id = r.run_id "
)
RUNS_SQL = _SUMMARY + "ORDER BY r.updated_at DESC, r.run_id LIMIT :limit"
RUNS_BY_STATUS_SQL = (
    _SUMMARY + "WHERE r.status = :status ORDER BY r.updated_at DESC, r.run_id LIMIT :limit"
)
RUN_SQL = _SUMMARY + "WHERE r.run_id = :run_id"
# LIKE finds the candidates; SQLite's LIKE ignores ASCII case, so the substr
# comparison keeps the match case-sensitive, as on PostgreSQL.
MATCH_RUNS_SQL = (
    "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' AND substr(run_id, 1, ?) = ? "
    "ORDER BY run_id LIMIT ?"
)
_LEASE_OF_SQL = "SELECT owner, expires_at FROM leases WHERE run_id = ?"
_FENCE_OF_SQL = "SELECT owner, expires_at, fence FROM leases WHERE run_id = ?"
_UPSERT_LEASE_SQL = (
    "INSERT INTO leases (run_id, owner, expires_at, fence) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, "
    "expires_at = excluded.expires_at, fence = excluded.fence"
)
# A released lease is expired, not deleted: its row keeps the fence, so the
# next owner's fence is higher than every earlier one (a stale holder's never
# becomes valid again).
RELEASE_SQL = "UPDATE leases SET expires_at = min(expires_at, ?) WHERE run_id = ? AND owner = ?"


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if any, never hiding the error that caused it."""
    # SQLite rolls some failures back by itself (a full disk may); a ROLLBACK
    # error must never hide the error that caused it.
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def append_tx(conn: sqlite3.Connection, batch: Batch) -> list[Envelope]:
    """Check the last seq, insert the chained batch and upsert the runs row, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if batch.fence is not None:
            must_hold_the_fence(conn, batch.run_id, batch.fence)
        row = conn.execute(LAST_SQL, (batch.run_id,)).fetchone()
        last_seq, last_hash = (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
        must_expect_the_last_seq(batch, last_seq)
        envelopes = chain_batch(batch, last_seq, last_hash)
        conn.executemany(
            _INSERT_SQL,
            [
                (e.run_id, e.seq, e.type, batch.at_text, e.data.decode(), e.prev_hash, e.hash)
                for e in envelopes
            ],
        )
        conn.execute(
            _UPSERT_RUN_SQL,
            {
                "run_id": batch.run_id,
                "status": batch.status,
                "label": batch.label,
                "at": batch.at_text,
                "seq": envelopes[-1].seq,
            },
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    return envelopes


def _is_envelope_row(row: tuple[Any, ...]) -> bool:
    seq, type_, at_text, data, prev, digest = row
    return (
        type(seq) is int
        and type(type_) is str
        and type(at_text) is str
        and type(data) is bytes
        and type(prev) is str
        and type(digest) is str
    )


def _unreadable(path: str, run_id: str, row: tuple[Any, ...], problem: str) -> EventUnreadableError:
    seq = row[0] if type(row[0]) is int else None
    return EventUnreadableError(path, run_id, seq, problem)


def _find_undecodable_text(  # noqa: PLR0917 - the fetch's own arguments, in its order
    conn: sqlite3.Connection, path: str, run_id: str, after: int, until: int, limit: int
) -> EventUnreadableError:
    names = ("type", "at", "prev_hash", "hash")
    for seq, *columns in conn.execute(_RAW_READ_SQL, (run_id, after, until, limit)):
        for name, raw in zip(names, columns, strict=True):
            try:
                if raw is not None:
                    raw.decode()
            except UnicodeDecodeError:
                return EventUnreadableError(path, run_id, seq, f"its {name} is not UTF-8 text")
    return EventUnreadableError(path, run_id, None, "a row's text is not UTF-8")


def fetch_envelopes(  # noqa: PLR0917 - positional: it crosses the thread hop as *args
    conn: sqlite3.Connection, path: str, run_id: str, after: int, until: int, limit: int
) -> list[Envelope]:
    """Up to ``limit`` (-1: all) envelopes with ``after < seq <= until``, checked row by row."""
    try:
        rows = conn.execute(_READ_SQL, (run_id, after, until, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
        raise _find_undecodable_text(conn, path, run_id, after, until, limit) from exc
    # All events of one append share one time text, so parse each distinct
    # text once; fromisoformat is the costliest step of decoding a row.
    times: dict[str, datetime] = {}
    parse = datetime.fromisoformat
    out = []
    for row in rows:
        if not _is_envelope_row(row):
            kinds = ", ".join(type(v).__name__ for v in row)
            raise _unreadable(path, run_id, row, f"its columns have the wrong types ({kinds})")
        seq, type_, at_text, data, prev, digest = row
        at = times.get(at_text)
        if at is None:
            try:
                at = parse(at_text)
            except ValueError:
                problem = f"its time {at_text!r} is not ISO-8601"
                raise _unreadable(path, run_id, row, problem) from None
            if at.utcoffset() is None:
                raise _unreadable(path, run_id, row, f"its time {at_text!r} has no timezone")
            times[at_text] = at
        out.append(Envelope(run_id, seq, type_, at, data, prev, digest))
    return out


def _lease_is_live(row: Any, now: float) -> bool:
    """Whether a leases row (owner, expires_at) exists and has not yet expired at ``now``."""
    # A lease expiring exactly now is already gone: that is when another owner may take it.
    return row is not None and row[1] > now


def must_hold_the_fence(conn: sqlite3.Connection, run_id: str, fence: int) -> None:
    """Raise :class:`LeaseLostError` unless the run's lease is live and carries ``fence``."""
    row = conn.execute(_FENCE_OF_SQL, (run_id,)).fetchone()
    live = _lease_is_live(row, time.time())
    if live and row[2] == fence:
        return
    holder = str(row[0]) if live else None
    raise LeaseLostError(run_id, fence, holder, None if row is None else int(row[2]))


def next_fence(row: Any, owner: str) -> int:
    """The fence of a lease passing to ``owner`` from the leases row (owner, expires_at, fence).

    A new row starts at 1; the same owner keeps its fence; another owner adds one.
    """
    if row is None:
        return 1
    return int(row[2]) if row[0] == owner else int(row[2]) + 1


def take_lease_row(
    conn: sqlite3.Connection, run_id: str, owner: str, ttl_s: float, now: float
) -> int | None:
    """Inside a write transaction: take or renew the lease; its fence, or None when held."""
    row = conn.execute(_FENCE_OF_SQL, (run_id,)).fetchone()
    if _lease_is_live(row, now) and row[0] != owner:
        return None
    fence = next_fence(row, owner)
    conn.execute(_UPSERT_LEASE_SQL, (run_id, owner, now + ttl_s, fence))
    return fence


def lease_tx(conn: sqlite3.Connection, run_id: str, owner: str, ttl_s: float) -> int | None:
    """Take or renew the lease unless another owner holds a live one; this machine's clock."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        fence = take_lease_row(conn, run_id, owner, ttl_s, time.time())
        conn.execute("COMMIT" if fence is not None else "ROLLBACK")
    except BaseException:
        rollback(conn)
        raise
    return fence


def lease_of(conn: sqlite3.Connection, run_id: str) -> tuple[str, float] | None:
    """The run's live lease as (owner, expiry in epoch seconds), or None when none is live."""
    row = conn.execute(_LEASE_OF_SQL, (run_id,)).fetchone()
    if not _lease_is_live(row, time.time()):
        return None
    return str(row[0]), float(row[1])


def query(
    conn: sqlite3.Connection, sql: str, params: tuple[Any, ...] | dict[str, Any]
) -> list[Any]:
    """Run one statement (autocommit) and return its rows."""
    return conn.execute(sql, params).fetchall()
