"""The rules every backend applies the same way: limits, the batch shape, the chain loop.

:class:`ledgerflow.eventstore.core.StoreCore` and both backends import these
from here (``core`` re-exports them), so SQLite and PostgreSQL cannot drift.

Example::

    items, at = check_append(run_id, events, expected_seq, at, max_event_bytes=limit)
    must_fit_in_seq_range(run_id, expected_seq, len(items))
    envelopes = chain_batch(batch, last_seq, last_hash)   # inside the backend's transaction
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from .appending import is_count
from .envelope import Envelope, RunSummary, _hash_text
from .errors import ConcurrencyError, InvalidAppendError, InvalidQueryError

__all__ = [
    "DEFAULT_BUSY_TIMEOUT_MS",
    "DEFAULT_MAX_EVENT_BYTES",
    "MAX_LEASE_TTL_S",
    "MAX_SEQ",
    "READ_CHUNK_ROWS",
    "Batch",
    "chain_batch",
    "clamp_range",
    "lease_ttl",
    "like_prefix",
    "must_expect_the_last_seq",
    "must_fit_in_seq_range",
    "query_limit",
    "summary_of",
]

DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_MAX_EVENT_BYTES = 1_048_576
READ_CHUNK_ROWS = 1000
MAX_SEQ = 2**63 - 1
"""The largest seq: both backends store seqs as signed 64-bit integers."""
MAX_LEASE_TTL_S = 86_400.0
"""The longest lease a driver may take: one day.

A lease is renewed every third of its ttl, so a long ttl buys the holder
nothing; it only keeps a crashed holder's run blocked for that long. A day
is far above any real use (the orchestrator's default is 30 s) and far
below what either backend can store (PostgreSQL overflows near 2**38 s;
SQLite would keep ``inf``, a lease that never expires)."""


class Batch(NamedTuple):
    """One append, validated, its time formatted once for every event it holds."""

    run_id: str
    items: list[tuple[str, bytes]]  # (type, data)
    expected_seq: int
    at: datetime
    at_text: str
    status: str | None
    label: str | None
    fence: int | None = None
    """With a fence, the append commits only while the run's live lease carries it."""


def must_fit_in_seq_range(run_id: str, expected_seq: int, count: int) -> None:
    """Refuse an append whose last seq would pass :data:`MAX_SEQ` (the columns are int64)."""
    if expected_seq > MAX_SEQ - count:
        raise InvalidAppendError(
            run_id,
            f"expected_seq {expected_seq} plus {count} events is beyond the largest seq {MAX_SEQ}",
        )


def must_expect_the_last_seq(batch: Batch, last_seq: int) -> None:
    """Refuse the append when another writer moved the run past ``expected_seq``."""
    if last_seq != batch.expected_seq:
        raise ConcurrencyError(batch.run_id, batch.expected_seq, last_seq)


def lease_ttl(run_id: str, ttl_s: object, operation: str | None = None) -> float:
    """``ttl_s`` as a float, or :class:`InvalidQueryError` unless ``0 < ttl_s <= MAX_LEASE_TTL_S``.

    NaN, infinities, bools and non-numbers are refused too: each backend
    turned them into a different failure, or into a lease that never expires.
    ``operation`` names what was refused (default: taking ``run_id``'s lease).

    Example::

        >>> lease_ttl("r1", 30)
        30.0
    """
    # Compared before float(): an int like 2**5000 must be refused, not overflow.
    # NaN fails the chained comparison too.
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not 0 < ttl_s <= MAX_LEASE_TTL_S
    ):
        raise InvalidQueryError(
            operation or f"take the lease of run {run_id!r}",
            f"ttl_s must be a number of seconds above 0 and at most {MAX_LEASE_TTL_S:.0f} "
            f"(one day), not {ttl_s!r}; renew a lease instead of taking a longer one",
        )
    return float(ttl_s)


def query_limit(operation: str, limit: object, minimum: int) -> int:
    """``limit`` clamped to :data:`MAX_SEQ`, or :class:`InvalidQueryError` unless an int >= minimum.

    Both databases take a LIMIT as a signed 64-bit integer, and no store holds
    more rows than that, so clamping changes no result; it keeps ``2**70``
    from becoming an OverflowError (SQLite) or a DataError (PostgreSQL). A
    bool is refused: ``limit=True`` is a mistake, not the number 1.

    Example::

        >>> query_limit("list runs", 2**70, 0)
        9223372036854775807
    """
    if not is_count(limit) or limit < minimum:
        raise InvalidQueryError(operation, f"limit must be an int >= {minimum}, not {limit!r}")
    return min(limit, MAX_SEQ)


def chain_batch(batch: Batch, last_seq: int, last_hash: str) -> list[Envelope]:
    """The envelopes of ``batch`` chained after the run's last (seq, hash): the chain loop.

    Example::

        >>> envs = chain_batch(batch, 0, GENESIS_HASH)
        >>> envs[0].seq, envs[0].prev_hash == GENESIS_HASH
        (1, True)
    """
    run_id, at, at_text = batch.run_id, batch.at, batch.at_text
    seq, prev = last_seq, last_hash
    envelopes = []
    for type_, data in batch.items:
        seq += 1
        digest = _hash_text(prev, run_id, seq, type_, at_text, data)
        envelopes.append(Envelope(run_id, seq, type_, at, data, prev, digest))
        prev = digest
    return envelopes


def clamp_range(after: int, until: int | None) -> tuple[int, int]:
    """The ``(lower, upper)`` seqs a read asks the database for, both within int64.

    A seq below 0 or above :data:`MAX_SEQ` matches nothing, so clamping
    changes no result; it keeps an out-of-range argument from becoming an
    overflow error in the driver.

    Example::

        >>> clamp_range(-5, 2**70)
        (-1, 9223372036854775807)
    """
    upper = MAX_SEQ if until is None else max(min(until, MAX_SEQ), -1)
    lower = max(min(after, MAX_SEQ), -1)
    return lower, upper


def like_prefix(prefix: str) -> str:
    r"""A LIKE pattern (escape character ``\``) matching the strings that start with ``prefix``.

    Example::

        >>> like_prefix("run_10%")
        'run\\_10\\%%'
    """
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def summary_of(row: Sequence[Any]) -> RunSummary:
    """A runs row with its live lease owner (times as ISO text or datetimes) as a summary."""
    run_id, status, label, created_at, updated_at, last_seq, owner = row
    if isinstance(created_at, str):
        created_at = datetime.fromisoformat(created_at)
    if isinstance(updated_at, str):
        updated_at = datetime.fromisoformat(updated_at)
    return RunSummary(run_id, status, label, created_at, updated_at, last_seq, owner)
