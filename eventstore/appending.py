"""Checks every backend makes on an append before touching its database.

Example::

    items, at = check_append("r1", events, 0, None, max_event_bytes=1 << 20)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TypeGuard

import msgspec

from .envelope import NewEvent
from .errors import EventTooLargeError, InvalidAppendError

__all__ = ["check_append", "is_count"]

_json_object = msgspec.json.Decoder(dict[str, Any])


def encodes_as_text(text: str) -> bool:
    """True when ``text`` is valid Unicode (no lone surrogate): what both databases store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def must_not_hold_nul(text: str) -> bool:
    """True when ``text`` holds a NUL character, which PostgreSQL text cannot store."""
    return "\x00" in text


def is_count(value: object) -> TypeGuard[int]:
    """Whether ``value`` is an int and not a bool: ``True`` passed as a count is a mistake, not 1.

    Example::

        >>> is_count(3), is_count(True), is_count(3.0)
        (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)


def check_append(
    run_id: str,
    events: Sequence[NewEvent],
    expected_seq: int,
    at: datetime | None,
    *,
    max_event_bytes: int,
) -> tuple[list[tuple[str, bytes]], datetime]:
    """The ``(type, data)`` of each event, and the append's time in UTC (default: now).

    Raises :class:`InvalidAppendError` for malformed arguments and
    :class:`EventTooLargeError` for an event over ``max_event_bytes``; nothing
    is written in either case. An empty event type, and a NUL character in
    the run id or a type, are refused on every backend (PostgreSQL text cannot
    hold NUL; SQLite could, and a log written there would not move).
    """
    if not isinstance(run_id, str) or not run_id:
        raise InvalidAppendError(str(run_id), "the run id must be a non-empty string")
    if not encodes_as_text(run_id):
        raise InvalidAppendError(
            run_id.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace"),
            "the run id holds a lone surrogate, which is not text a store can hold")
    if must_not_hold_nul(run_id):
        raise InvalidAppendError(
            run_id,
            "the run id holds a NUL character, which PostgreSQL text cannot store "
            "(refused on every backend, so a log moves between them)",
        )
    if not events:
        raise InvalidAppendError(run_id, "there are no events to append")
    if not is_count(expected_seq) or expected_seq < 0:
        raise InvalidAppendError(
            run_id, f"expected_seq must be an int >= 0 (0 for a new run), not {expected_seq!r}"
        )
    if at is None:
        at = datetime.now(UTC)
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidAppendError(run_id, f"the time {at!r} has no timezone; pass a UTC datetime")
    items = []
    for index, event in enumerate(events):
        data = event.data
        if not isinstance(data, bytes):
            raise InvalidAppendError(
                run_id,
                f"event {index} ({event.type!r}) has data of type "
                f"{type(data).__name__}; encode it with msgspec.json.encode",
            )
        if len(data) > max_event_bytes:
            raise EventTooLargeError(run_id, event.type, len(data), max_event_bytes)
        if not isinstance(event.type, str) or not event.type:
            raise InvalidAppendError(
                run_id, f"event {index} has the type {event.type!r}; it must be a non-empty string"
            )
        if must_not_hold_nul(event.type):
            raise InvalidAppendError(
                run_id, f"event {index} type {event.type!r} holds a NUL character"
            )
        try:
            # The data must stay queryable (json_extract, ->>) on every row.
            _json_object.decode(data)
        except msgspec.DecodeError as exc:
            raise InvalidAppendError(
                run_id, f"event {index} ({event.type!r}) data is not a JSON object ({exc})"
            ) from exc
        items.append((event.type, data))
    return items, at.astimezone(UTC)
