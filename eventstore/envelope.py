"""Envelopes, the runs projection row, and the per-run SHA-256 hash chain.

Everything here is pure: no I/O and no clock. The hash format is persisted in
every store, so it is specified exactly and must never change silently.

Hash format (version 1). The hash of an event is the hex SHA-256 of::

    b"runledger.eventstore.chain.v1\\x00"
    + frame(prev_hash) + frame(run_id) + frame(str(seq)) + frame(type)
    + frame(at_text) + frame(data)

where ``frame(x)`` is the 8-byte big-endian length of ``x``'s UTF-8 bytes
followed by those bytes, and ``at_text`` is ``at`` in UTC as
``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``. Length prefixes make the framing
unambiguous: no two different field tuples hash the same bytes.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from datetime import UTC, datetime

import msgspec

__all__ = [
    "ChainCursor",
    "ChainProblem",
    "Envelope",
    "GENESIS_HASH",
    "NewEvent",
    "RunSummary",
    "chain_hash",
    "check_chain",
    "format_at",
    "parse_at",
]

GENESIS_HASH = "0" * 64
"""The ``prev_hash`` of the first event (seq 1) of every run."""

# WIRE FORMAT, hashed into every event ever written (since 0.1, before the
# rename to ledgerflow): changing one byte breaks the chain of every existing log.
_DOMAIN = b"runledger.eventstore.chain.v1\x00"
_LEN = struct.Struct(">Q").pack


class NewEvent(msgspec.Struct, frozen=True):
    """An event a caller appends: its type and its JSON-object data, already encoded.

    Example::

        NewEvent("TaskDispatched", msgspec.json.encode({"task_id": "price"}))
    """

    type: str
    data: bytes


class Envelope(msgspec.Struct, frozen=True):
    """An event as stored and read back, with its place in the run's hash chain.

    Example::

        async for env in store.read("r1"):
            print(env.seq, env.type, msgspec.json.decode(env.data))
    """

    run_id: str
    seq: int
    type: str
    at: datetime
    data: bytes
    prev_hash: str
    hash: str


class RunSummary(msgspec.Struct, frozen=True):
    """A row of the runs projection, kept in the same transaction as each append.

    ``owner`` is read with it: the live lease holder at the time of the query.

    Example::

        for run in await store.runs(status="failed"):
            print(run.run_id, run.last_seq, run.updated_at)
    """

    run_id: str
    status: str
    label: str
    created_at: datetime
    updated_at: datetime
    last_seq: int
    owner: str | None = None
    """Who holds the run's live lease (a worker id), None when nobody does."""


class ChainProblem(msgspec.Struct, frozen=True):
    """The first break found in a run's hash chain.

    ``kind`` is one of ``"gap"``, ``"duplicate"``, ``"out_of_order"``,
    ``"prev_hash"``, ``"hash"`` or ``"run_id"``; ``message`` is one sentence
    naming the seq.
    """

    seq: int
    kind: str
    message: str


def format_at(at: datetime) -> str:
    """Return the stored text of a tz-aware time: UTC, ISO-8601, microseconds.

    Example::

        >>> format_at(datetime(2024, 5, 1, 12, 0, tzinfo=UTC))
        '2024-05-01T12:00:00.000000+00:00'
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"The event time {at!r} has no timezone; pass a tz-aware UTC datetime.")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_at(text: str) -> datetime:
    """Return the tz-aware datetime of a stored time text (inverse of :func:`format_at`)."""
    return datetime.fromisoformat(text)


def _hash_text(  # noqa: PLR0917 - positional in the order the hash frames the fields
    prev_hash: str, run_id: str, seq: int, type_: str, at_text: str, data: bytes
) -> str:
    # Written out rather than looped: this runs once per appended event.
    p = prev_hash.encode()
    r = run_id.encode()
    s = str(seq).encode()
    t = type_.encode()
    a = at_text.encode()
    return hashlib.sha256(b"".join((
        _DOMAIN, _LEN(len(p)), p, _LEN(len(r)), r, _LEN(len(s)), s, _LEN(len(t)), t,
        _LEN(len(a)), a, _LEN(len(data)), data,
    ))).hexdigest()


def chain_hash(  # noqa: PLR0917 - positional in the order the hash frames the fields
    prev_hash: str,
    run_id: str,
    seq: int,
    type: str,
    at: datetime,
    data: bytes,
) -> str:
    """Return the hex SHA-256 of one event chained to the previous one.

    Example::

        >>> h1 = chain_hash(GENESIS_HASH, "r1", 1, "RunStarted",
        ...                 datetime(2024, 5, 1, tzinfo=UTC), b'{"goal":"x"}')
        >>> len(h1)
        64
    """
    return _hash_text(prev_hash, run_id, seq, type, format_at(at), data)


class ChainCursor:
    """Checks a run's chain one envelope at a time, as a stream of them is read.

    :func:`check_chain` over a list, without holding the list: a caller that
    folds a streamed log checks its chain in the same pass. ``feed`` returns
    the first break (and keeps returning it), ``seq`` is the last seq fed.

    Example::

        cursor = ChainCursor("r1")
        async for env in store.read("r1"):
            if (problem := cursor.feed(env)) is not None:
                raise SystemExit(problem.message)
    """

    __slots__ = ("hash", "problem", "run_id", "seq")

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0
        self.hash = GENESIS_HASH
        self.problem: ChainProblem | None = None

    def feed(self, env: Envelope) -> ChainProblem | None:
        """Check the next envelope; the first break found so far, or None."""
        if self.problem is None:
            self.problem = _next_problem(self.run_id, self.seq, self.hash, env)
            if self.problem is None:
                self.seq = env.seq
                self.hash = env.hash
        return self.problem


def _next_problem(run_id: str, prev_seq: int, prev_hash: str, env: Envelope
                  ) -> ChainProblem | None:
    seq = env.seq
    if env.run_id != run_id:
        return ChainProblem(
            seq,
            "run_id",
            f"Event seq {seq} belongs to run {env.run_id!r}, not to run {run_id!r}: "
            "the log mixes runs.",
        )
    if seq == prev_seq:
        return ChainProblem(
            seq, "duplicate", f"Event seq {seq} of run {run_id!r} appears twice in the log."
        )
    if seq < prev_seq or seq < 1:
        return ChainProblem(
            seq,
            "out_of_order",
            f"Event seq {seq} of run {run_id!r} comes after seq {prev_seq}: "
            "the log is out of order.",
        )
    if seq != prev_seq + 1:
        missing = prev_seq + 1
        return ChainProblem(
            missing,
            "gap",
            f"Event seq {missing} of run {run_id!r} is missing: the log jumps from "
            f"seq {prev_seq} to seq {seq}, so an event was deleted.",
        )
    if env.prev_hash != prev_hash:
        return ChainProblem(
            seq,
            "prev_hash",
            f"Event seq {seq} of run {run_id!r} does not link to the event before it: "
            "an earlier event was altered, removed or reordered.",
        )
    if _hash_text(prev_hash, run_id, seq, env.type, format_at(env.at), env.data) != env.hash:
        return ChainProblem(
            seq,
            "hash",
            f"Event seq {seq} of run {run_id!r} does not match its hash: its type, time "
            "or data was altered after it was written.",
        )
    return None


def check_chain(run_id: str, envelopes: Iterable[Envelope]) -> ChainProblem | None:
    """Return the first break in a run's chain from seq 1, or None when it holds.

    The envelopes must be the whole run in seq order, as ``read_all`` returns
    it. A deleted last event cannot be seen from the chain alone; compare with
    the run's ``last_seq`` for that. Nor can a chain recomputed after an edit:
    only a head kept outside the store (``ledgerflow log RUN --head``, see
    :mod:`ledgerflow.replay.anchors`) tells that log from the one written.

    Example::

        problem = check_chain("r1", await store.read_all("r1"))
        if problem is not None:
            print(problem.message)   # "Event seq 7 of run 'r1' does not match its hash: ..."
    """
    cursor = ChainCursor(run_id)
    for env in envelopes:
        if cursor.feed(env) is not None:
            break
    return cursor.problem
