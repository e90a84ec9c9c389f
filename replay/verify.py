"""``verify``: is this log intact, legal, and what the current code would decide?

The checks, each a :class:`Check` with a pass/fail line:

1. **chain** — the SHA-256 chain holds and seqs are gapless: an edited,
   deleted or reordered row is found and its seq named.
2. **transitions** — every event decodes and is a legal move of its machine.
3. **determinism** — the current code's decider, fed the recorded facts in
   order, makes the recorded decisions; the first divergence is shown with
   both versions. It needs the workflow's code: without one this check is
   SKIPPED (said so plainly, never counted as a pass).
4. **snapshots** (only when the store holds state snapshots of the run) —
   each equals the log's fold at its seq and holds the chain hash there
   (:mod:`ledgerflow.replay.verify_snapshots`): an edited snapshot, which a
   resume would trust, is found here and named (run, seq, fields).
5. **anchor** (only with ``head=``) — the log holds the chain head taken
   earlier and kept outside the store (:mod:`ledgerflow.replay.anchors`),
   with its seal checked when keys are given: the one check a log rewritten
   with its chain recomputed, or truncated with its ``runs`` row edited to
   match, cannot pass.

Example::

    report = await verify_run(store, run_id, workflow=wf)
    assert report.ok, report.lines()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledgerflow.contracts.secrets import refs_in
from ledgerflow.eventstore import Envelope, EventStore, check_chain
from ledgerflow.machines import (
    Event,
    EventTooNewError,
    IllegalTransitionError,
    ResolutionError,
    RunNotFoundError,
    RunState,
    Workflow,
    WorkflowDefinitionError,
    advance,
    evolve,
)
from ledgerflow.machines.events import ForkedFrom
from ledgerflow.machines.secret_keeping import fact_values
from ledgerflow.replay.anchors import Anchor, AnchorKeys, anchor_problem
from ledgerflow.replay.batches import comparable, split_batches
from ledgerflow.replay.errors import LogDecodeError, ReplayDivergenceError
from ledgerflow.replay.timeline import decode_log

__all__ = [
    "SKIP_HINT",
    "Check",
    "Divergence",
    "VerifyReport",
    "check_determinism",
    "verify_run",
]


@dataclass(frozen=True, slots=True)
class Divergence:
    """Where the current code parts from the log."""

    seq: int
    recorded: Event | None
    decided: Event | None

    def describe(self) -> str:
        return (f"seq {self.seq}: recorded {_describe(self.recorded)}, "
                f"current code decides {_describe(self.decided)}")


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome; ``ok`` is False only when it failed (a skipped check is ok)."""

    name: str
    ok: bool
    message: str
    seq: int | None = None
    divergence: Divergence | None = None
    skipped: bool = False

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL`` or ``SKIP``."""
        if self.skipped:
            return "SKIP"
        return "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        return f"{self.verdict}  {self.name}: {self.message}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    run_id: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (a skipped one does not fail, but see :attr:`skipped`)."""
        return all(c.ok for c in self.checks)

    @property
    def skipped(self) -> list[str]:
        """The names of the checks that were not run."""
        return [c.name for c in self.checks if c.skipped]

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def raise_for_divergence(self) -> None:
        """Raise :class:`ReplayDivergenceError` if the current code decides differently.

        For a test that pins a policy change against recorded runs::

            (await verify_run(store, run_id, workflow=wf)).raise_for_divergence()
        """
        for check in self.checks:
            div = check.divergence
            if div is not None:
                raise ReplayDivergenceError(
                    self.run_id, div.seq,
                    _describe(div.recorded), _describe(div.decided))


def _describe(event: Event | None) -> str:
    if event is None:
        return "nothing"
    move = f" ({event.src} -> {event.dst})" if event.dst else ""
    return f"{event.type} on {event.machine}{move}"


def _chain_check(run_id: str, envelopes: Sequence[Envelope]) -> Check:
    problem = check_chain(run_id, envelopes)
    if problem is None:
        return Check("chain", True, f"{len(envelopes)} events, seqs 1..{len(envelopes)} gapless, "
                     "every hash matches")
    return Check("chain", False, problem.message, seq=problem.seq)


def _transition_check(run_id: str, envelopes: Sequence[Envelope]) -> tuple[Check, list[Event]]:
    try:
        decoded = decode_log(run_id, envelopes)
    except LogDecodeError as exc:
        return Check("transitions", False, str(exc), seq=exc.seq), []
    except EventTooNewError as exc:
        # The chain is still checked; only what this version cannot read is not.
        return Check("transitions", False, str(exc), seq=exc.seq), []
    state = RunState(run_id=run_id)
    for env, event in decoded:
        try:
            evolve(state, event)
        except IllegalTransitionError as exc:
            return Check("transitions", False, f"seq {env.seq}: {exc}", seq=env.seq), []
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            # The fold trusts a log it wrote (an edited plan can name a task that is
            # not there): here that is a finding about the log, not a crash of verify.
            return Check("transitions", False, f"seq {env.seq}: the event cannot be applied "
                         f"to the state before it ({type(exc).__name__}: {exc}); the log was "
                         "altered or is corrupt.", seq=env.seq), []
    return (Check("transitions", True, f"every event is a legal move; the run ends "
                  f"{state.status.value}"), [e for _, e in decoded])


def check_determinism(
    run_id: str, seqs: Sequence[int], events: Sequence[Event], workflow: Workflow,
    secrets: Mapping[str, Any] | None = None,
) -> Check:
    """Feed the recorded facts to the current decider; compare its decisions.

    ``secrets`` (the vault's values by reference) let outputs with secret
    fields be validated again; a fact whose secrets were erased cannot be,
    so its recorded decisions are folded unchecked and the message says how many.
    """
    state = RunState(run_id=run_id)
    by_seq = dict(zip(seqs, events, strict=True))
    decided_count = 0
    unchecked = 0
    for batch in split_batches(seqs, events):
        if _secrets_erased(batch.fact, secrets):
            for event in batch.events:
                evolve(state, event)
            unchecked += 1
            continue
        try:
            new = advance(state, batch.fact, workflow, secrets=secrets)
        except (ResolutionError, WorkflowDefinitionError, IllegalTransitionError) as exc:
            div = Divergence(batch.seqs[0], batch.fact, None)
            return Check("determinism", False, f"{div.describe()} ({exc})", seq=batch.seqs[0],
                         divergence=div)
        for i in range(max(len(new), len(batch.events))):
            recorded = batch.events[i] if i < len(batch.events) else None
            decided = new[i] if i < len(new) else None
            if recorded is None or decided is None or comparable(recorded) != comparable(decided):
                seq = batch.seqs[i] if i < len(batch.seqs) else batch.seqs[-1] + 1
                div = Divergence(seq, recorded, decided)
                return Check("determinism", False, div.describe(), seq=seq, divergence=div)
        decided_count += len(new)
        # Keep the fold in step with ForkedFrom records the batches leave out.
        for seq in batch.seqs[-1:]:
            nxt = by_seq.get(seq + 1)
            if isinstance(nxt, ForkedFrom):
                evolve(state, nxt)
    erased = (f"; {unchecked} fact(s) not checked: the secrets they hold were erased"
              if unchecked else "")
    return Check("determinism", True, f"the current code makes the same {decided_count} "
                 f"decisions from the recorded facts{erased}")


def _secrets_erased(fact: Event, secrets: Mapping[str, Any] | None) -> bool:
    """Whether ``fact`` refers to a secret the vault no longer holds."""
    return any(ref not in (secrets or {})
               for value in fact_values(fact) for ref in refs_in(value))


async def vault_of(store: EventStore, events: Sequence[Event]) -> dict[str, Any]:
    """The vault's values of every secret the recorded events refer to."""
    refs = {ref for event in events for value in fact_values(event) for ref in refs_in(value)}
    found = await store.get_secrets(refs) if refs else {}
    return {ref: msgspec.json.decode(raw) for ref, raw in found.items()}


SKIP_HINT = ("run `ledgerflow verify RUN --workflow MODULE:WORKFLOW` to check that the "
             "current code makes the same decisions")


async def verify_run(
    store: EventStore,
    run_id: str,
    *,
    workflow: Workflow | None = None,
    why_skipped: str = "",
    head: Anchor | tuple[int, str] | None = None,
    keys: AnchorKeys | None = None,
) -> VerifyReport:
    """Run the checks on one run; determinism only when ``workflow`` is given.

    Without a workflow the determinism check is reported as skipped, with
    ``why_skipped`` (e.g. why the recorded workflow could not be found).
    With ``head`` (an :class:`Anchor` or ``(seq, hash)``, kept outside the
    store) an ``anchor`` check is added; ``keys`` check its seal.

    Example::

        report = await verify_run(store, run_id)          # chain and transitions
        assert report.skipped == ["determinism"]
        report = await verify_run(store, run_id, head=(14, kept_hash))
    """
    envelopes = await store.read_all(run_id)
    if not envelopes:
        raise RunNotFoundError(run_id)
    checks = [_chain_check(run_id, envelopes)]
    summary = await store.run(run_id)
    if checks[0].ok and summary is not None and summary.last_seq != len(envelopes):
        # The chain cannot see a deleted last event; the projection, written in
        # the same transaction as every append, remembers how far the log went.
        missing = len(envelopes) + 1
        checks[0] = Check("chain", False, f"Event seq {missing} of run '{run_id}' is missing: "
                          f"the runs table records {summary.last_seq} events but the log holds "
                          f"{len(envelopes)}; events were deleted after they were written.",
                          seq=missing)
    transitions, events = _transition_check(run_id, envelopes)
    checks.append(transitions)
    if snapshots := await store.snapshots(run_id):
        # Imported here: it builds on this module's Check.
        from ledgerflow.replay.verify_snapshots import check_snapshots  # noqa: PLC0415

        checks.append(check_snapshots(run_id, envelopes, events if checks[0].ok else [],
                                      snapshots))
    if workflow is not None:
        if events:
            checks.append(check_determinism(
                run_id, [e.seq for e in envelopes], events, workflow,
                await vault_of(store, events)))
        else:
            checks.append(Check("determinism", False,
                                "not checked: the log does not fold (see above)"))
    else:
        why = why_skipped or "no workflow was given"
        checks.append(Check("determinism", True, f"not checked: {why}; {SKIP_HINT}.",
                            skipped=True))
    if head is not None:
        anchor = head if isinstance(head, Anchor) else Anchor(head[0], head[1])
        checks.append(_anchor_check(run_id, envelopes, anchor, keys))
    return VerifyReport(run_id, checks)


def _anchor_check(run_id: str, envelopes: Sequence[Envelope], anchor: Anchor,
                  keys: AnchorKeys | None) -> Check:
    problem = anchor_problem(run_id, envelopes, anchor, keys)
    if problem is not None:
        return Check("anchor", False, problem[1], seq=problem[0])
    kind = anchor.seal_kind
    sealed = f"; its {'MAC' if kind == 'mac' else 'signature'} matches the key" if kind else ""
    after = len(envelopes) - anchor.seq
    later = (f"; the {after} event{'s' if after != 1 else ''} after it "
             f"{'are' if after != 1 else 'is'} covered by the chain alone" if after else "")
    return Check("anchor", True, f"the log holds the anchored head {anchor.seq}:"
                 f"{anchor.hash[:12]}… and the chain up to it{sealed}{later}", seq=anchor.seq)
