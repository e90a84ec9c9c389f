"""Waiting out a busy model server: ``Retry-After`` honoured, 429s backed off, all bounded.

The ``openai`` client's own retries are turned off (``max_retries=0``) so that
every wait is decided here, bounded by the run's deadline, and recorded in the
step's ``detail["waits"]`` — a wait the log does not show would make a slow
run impossible to explain afterwards.

Which answers are waited out:

- 429 or 503 with ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP
  date): wait that long;
- 429 without either: exponential backoff (``backoff_s * multiplier ** n``,
  at most ``max_backoff_s``), with no jitter, so a recorded wait is the wait
  the policy says;
- anything else (a 503 that names no time, a 500, a 400) is not a wait: the
  error goes to the task's retry policy.

Example::

    >>> retry_after_s({"retry-after-ms": "250"}, now=0.0)
    0.25
    >>> WaitPolicy(backoff_s=0.5).backoff(2)
    2.0
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledgerflow.errors import LedgerflowError
from ledgerflow.machines import PermanentError

__all__ = [
    "WAITABLE_STATUSES",
    "ModelRateLimitedError",
    "ModelWaitPastDeadlineError",
    "WaitPolicy",
    "planned_wait",
    "retry_after_s",
]

#: The statuses a server uses to say "later": too many requests, and unavailable.
WAITABLE_STATUSES = frozenset({429, 503})
_TOO_MANY_REQUESTS = 429


@dataclass(frozen=True, slots=True)
class WaitPolicy:
    """How long and how often one model call may wait for a busy server.

    ``max_waits`` bounds the waits of one call (each wait is followed by one
    more request); ``max_wait_s`` bounds a single wait, whatever the server
    asks (a ``Retry-After`` of an hour is a failure, not a plan).

    Example::

        WaitPolicy(max_waits=3, backoff_s=1.0, max_backoff_s=10.0)
    """

    max_waits: int = 5
    backoff_s: float = 0.5
    multiplier: float = 2.0
    max_backoff_s: float = 30.0
    max_wait_s: float = 120.0

    def __post_init__(self) -> None:
        if self.max_waits < 0 or self.backoff_s < 0 or self.multiplier < 1 \
                or self.max_backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError(
                "WaitPolicy needs max_waits >= 0, backoff_s >= 0, multiplier >= 1, "
                f"max_backoff_s >= 0 and max_wait_s >= 0 (got max_waits={self.max_waits}, "
                f"backoff_s={self.backoff_s}, multiplier={self.multiplier}, "
                f"max_backoff_s={self.max_backoff_s}, max_wait_s={self.max_wait_s})."
            )

    def backoff(self, waits_so_far: int) -> float:
        """The wait after a 429 that names no time, when ``waits_so_far`` waits came before."""
        return min(self.max_backoff_s, self.backoff_s * self.multiplier ** waits_so_far)


class ModelRateLimitedError(LedgerflowError):
    """A model server still refused after the call's waits (or asked for a wait too long).

    Not permanent: the task's retry policy decides whether a later attempt tries again.
    """

    def __init__(self, *, model: str, status: int, waits: list[dict[str, Any]],
                 reason: str) -> None:
        self.model = model
        self.status = status
        self.waits = waits
        waited = sum(float(w["retry_after_s"]) for w in waits)
        super().__init__(
            f"Model '{model}' answered {status} {reason} after {len(waits)} wait(s) "
            f"totalling {waited:.3g}s; the call is given up (the task's retry policy decides "
            "whether to try again; WaitPolicy(max_waits=..., max_wait_s=...) bounds the waits)."
        )


class ModelWaitPastDeadlineError(PermanentError):
    """The server asked for a wait that would end after the run's deadline.

    Permanent: any retry would land past the deadline too, so the task fails at once.
    """

    def __init__(self, *, model: str, status: int, wait_s: float, time_left_s: float) -> None:
        self.model = model
        self.status = status
        self.wait_s = wait_s
        self.time_left_s = time_left_s
        super().__init__(
            f"Model '{model}' answered {status} and asks to wait {wait_s:.3g}s, but the run's "
            f"deadline is {max(time_left_s, 0.0):.3g}s away; not waiting past it (give the run "
            "a later Budget(deadline_s=...) or a less busy model)."
        )


def _http_date_s(value: str, now: float) -> float | None:
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return float(email.utils.mktime_tz(parsed)) - now
    except (TypeError, ValueError, OverflowError):
        return None


def retry_after_s(headers: Mapping[str, str], *, now: float) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, then ``Retry-After`` (seconds or
    an HTTP date relative to ``now``, a Unix time); ``None`` if it names no (readable) time.

    A time in the past is 0; an unreadable header is ignored (the caller backs off).

    Example::

        >>> retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0)
        10.0
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = lowered.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        if math.isnan(seconds):
            continue
        return max(seconds, 0.0)
    value = lowered.get("retry-after")
    if value is None:
        return None
    seconds_or_none = _http_date_s(value, now)
    return None if seconds_or_none is None else max(seconds_or_none, 0.0)


def planned_wait(*, model: str, status: int, headers: Mapping[str, str],
                 waits: list[dict[str, Any]], policy: WaitPolicy,
                 time_left_s: float | None, now: float) -> dict[str, Any] | None:
    """The wait to make before asking again, as the log records it, or ``None`` if this
    answer is not one to wait out (the caller re-raises it).

    Raises :class:`ModelRateLimitedError` when the call has used its waits or the server
    asks for more than ``policy.max_wait_s``, and :class:`ModelWaitPastDeadlineError` when
    the wait would end after the run's deadline.

    Example::

        >>> planned_wait(model="m", status=429, headers={}, waits=[], policy=WaitPolicy(),
        ...              time_left_s=None, now=0.0)
        {'status': 429, 'retry_after_s': 0.5, 'source': 'backoff'}
    """
    if status not in WAITABLE_STATUSES:
        return None
    asked = retry_after_s(headers, now=now)
    if asked is None and status != _TOO_MANY_REQUESTS:
        return None  # a 503 that names no time: a failure, not a request to wait
    if len(waits) >= policy.max_waits:
        raise ModelRateLimitedError(model=model, status=status, waits=waits,
                                    reason=f"again (the call's {policy.max_waits} waits are used)")
    if asked is not None and asked > policy.max_wait_s:
        raise ModelRateLimitedError(
            model=model, status=status, waits=waits,
            reason=f"and asks to wait {asked:.3g}s, more than max_wait_s={policy.max_wait_s:g}")
    wait_s = policy.backoff(len(waits)) if asked is None else asked
    if time_left_s is not None and wait_s > time_left_s:
        raise ModelWaitPastDeadlineError(model=model, status=status, wait_s=wait_s,
                                         time_left_s=time_left_s)
    return {"status": status, "retry_after_s": round(wait_s, 6),
            "source": "backoff" if asked is None else "retry-after"}
