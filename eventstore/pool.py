"""What the store offers a pool of workers: claims, the workers registry, wake-up rules.

The types (:class:`Claim`, :class:`WorkerInfo`) and the argument checks are
here once for both backends; :class:`ledgerflow.eventstore.core.StoreCore`
calls them, and each backend runs the SQL.

Example::

    claim = await store.claim_run("worker-1", 30, statuses=["queued"])
    if claim is not None:
        await store.append(claim.run_id, events, expected_seq, fence=claim.fence)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import InvalidQueryError

__all__ = [
    "WAKE_STATUSES",
    "Claim",
    "WorkerInfo",
    "check_gone_s",
    "check_names",
    "check_wait",
    "check_worker_id",
    "encode_info",
    "notify_channel",
]

WAKE_STATUSES = frozenset({"queued", "running"})
"""An unfenced append that leaves a run in one of these statuses wakes the pool."""


@dataclass(frozen=True)
class Claim:
    """A run a worker claimed: its lease is now the worker's, with this ``fence``.

    Pass ``fence`` to every append while driving the run; once the lease has
    passed to someone else the append raises :class:`LeaseLostError`.

    Example::

        claim = await store.claim_run("w1", 30, statuses=["queued", "running"])
        claim.run_id, claim.fence, claim.status, claim.label   # ('r7', 1, 'queued', 'travel')
    """

    run_id: str
    fence: int
    status: str
    label: str


@dataclass(frozen=True)
class WorkerInfo:
    """A row of the workers registry, as :meth:`EventStore.workers` lists it.

    Times are epoch seconds on the clock the store judges expiry by (SQLite:
    this machine's; PostgreSQL: the server's). ``runs`` are the runs whose
    live lease this worker holds.

    Example::

        for w in await store.workers():
            print(w.worker_id, "alive" if w.alive else "gone", w.runs)
    """

    worker_id: str
    info: dict[str, Any]
    started_at: float
    heartbeat_at: float
    expires_at: float
    alive: bool
    runs: tuple[str, ...]


def check_worker_id(operation: str, worker_id: object) -> str:
    """``worker_id`` if it is a non-empty str without NUL, else :class:`InvalidQueryError`."""
    if not isinstance(worker_id, str) or not worker_id or "\x00" in worker_id:
        raise InvalidQueryError(
            operation, f"the worker id must be a non-empty str without NUL, not {worker_id!r}"
        )
    return worker_id


def check_names(operation: str, what: str, names: object) -> list[str]:
    """``names`` (statuses, workflows) as a non-empty list of str; a lone str is refused.

    Example::

        >>> check_names("claim a run", "statuses", ("queued",))
        ['queued']
    """
    if isinstance(names, str | bytes) or not isinstance(names, Sequence):
        raise InvalidQueryError(operation, f"{what} must be a list of str, not {names!r}")
    values = list(names)
    if not values or not all(isinstance(v, str) and "\x00" not in v for v in values):
        raise InvalidQueryError(
            operation, f"{what} must be a non-empty list of str without NUL, not {names!r}"
        )
    return values


def encode_info(worker_id: str, info: object) -> str:
    """A worker's ``info`` dict as JSON text, or :class:`InvalidQueryError` naming why not."""
    operation = f"register worker {worker_id!r}"
    if not isinstance(info, dict):
        raise InvalidQueryError(operation, f"info must be a dict, not {type(info).__name__}")
    try:
        text = msgspec.json.encode(info).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidQueryError(operation, f"info must be JSON-encodable ({exc})") from exc
    if "\\u0000" in text:
        raise InvalidQueryError(operation, "info holds a NUL character")
    return text


def check_wait(timeout_s: object) -> float:
    """``timeout_s`` as a float, or :class:`InvalidQueryError` unless a finite number >= 0."""
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0 <= timeout_s < math.inf
    ):
        raise InvalidQueryError(
            "wait for work", f"timeout_s must be a finite number of seconds >= 0, not {timeout_s!r}"
        )
    return float(timeout_s)


def check_gone_s(include_gone_s: object) -> float:
    """``include_gone_s`` as a float (capped at a century), or :class:`InvalidQueryError`."""
    if (
        isinstance(include_gone_s, bool)
        or not isinstance(include_gone_s, int | float)
        or not include_gone_s >= 0
    ):
        raise InvalidQueryError(
            "list workers", f"include_gone_s must be a number >= 0, not {include_gone_s!r}"
        )
    # The cap keeps "now - include_gone_s" a time both databases can hold.
    return min(float(include_gone_s), 100 * 365 * 86_400.0)


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel of a PostgreSQL store's schema (at most 63 bytes).

    Example::

        >>> notify_channel("ledgerflow")
        'ledgerflow_work_ledgerflow'
    """
    channel = f"ledgerflow_work_{schema}"
    if len(channel) > 63:  # PostgreSQL would truncate the name: hash the schema instead
        channel = "ledgerflow_work_" + hashlib.sha256(schema.encode()).hexdigest()[:40]
    return channel
