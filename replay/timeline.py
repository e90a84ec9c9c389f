"""The decision log as rows a person (or a spreadsheet) can read.

Example::

    rows = decision_log(await store.read_all(run_id))
    for row in rows:
        print(row.seq, row.type, row.machine, row.move, row.reason)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from ledgerflow.eventstore import Envelope
from ledgerflow.machines import Event, EventTooNewError, RunState, decode_event, evolve
from ledgerflow.replay.errors import LogDecodeError

__all__ = ["LogRow", "decision_log", "decode_log", "rebuild"]


@dataclass(frozen=True, slots=True)
class LogRow:
    """One event of the decision log."""

    seq: int
    at: datetime
    type: str
    machine: str
    trigger: str
    src: str
    dst: str
    reason: str
    event: Event
    #: The event's data exactly as stored (and hashed), and its place in the chain.
    raw: bytes = b""
    prev_hash: str = ""
    hash: str = ""

    @property
    def move(self) -> str:
        return f"{self.src} -> {self.dst}" if self.dst else ""

    def to_dict(self) -> dict[str, Any]:
        """The row as one JSON-ready document (the keys of ``log --format jsonl``).

        ``data`` is the stored data verbatim (a :class:`msgspec.Raw`, so an
        encoder writes the very bytes the hash covers); ``prev_hash`` and
        ``hash`` let an auditor re-check the chain from the export alone.
        """
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "type": self.type,
            "machine": self.machine,
            "trigger": self.trigger,
            "src": self.src,
            "dst": self.dst,
            "reason": self.reason,
            "data": msgspec.Raw(self.raw) if self.raw else msgspec.to_builtins(self.event),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def decode_log(run_id: str, envelopes: Iterable[Envelope]) -> list[tuple[Envelope, Event]]:
    """Decode every envelope; a bad one raises :class:`LogDecodeError` naming its seq."""
    decoded: list[tuple[Envelope, Event]] = []
    for env in envelopes:
        try:
            event = decode_event(env.data)
        except EventTooNewError as exc:
            raise exc.at(env.seq, run_id) from None
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise LogDecodeError(run_id, env.seq, str(exc)) from exc
        except RecursionError:
            raise LogDecodeError(run_id, env.seq, "its data is nested too deep to decode") \
                from None
        if event.type != env.type:
            raise LogDecodeError(
                run_id, env.seq, f"its type column says {env.type} but its data is {event.type}")
        decoded.append((env, event))
    return decoded


def decision_log(envelopes: Sequence[Envelope]) -> list[LogRow]:
    """The rows of the decision log, in seq order."""
    run_id = envelopes[0].run_id if envelopes else ""
    return [
        LogRow(
            seq=env.seq, at=env.at, type=event.type, machine=event.machine,
            trigger=event.trigger or "", src=event.src, dst=event.dst, reason=event.reason,
            event=event, raw=env.data, prev_hash=env.prev_hash, hash=env.hash,
        )
        for env, event in decode_log(run_id, envelopes)
    ]


def rebuild(run_id: str, envelopes: Sequence[Envelope], at: int | None = None) -> RunState:
    """The run's state after seq ``at`` (default: the last), folded from its log.

    Unlike :func:`ledgerflow.machines.load_run_state`, a row that does not
    decode is a :class:`LogDecodeError` naming its seq.

    Example::

        state = rebuild(run_id, await store.read_all(run_id), at=12)
    """
    state = RunState(run_id=run_id)
    for env, event in decode_log(run_id, envelopes):
        if at is not None and env.seq > at:
            break
        evolve(state, event)
    return state
