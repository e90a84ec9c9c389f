"""Errors of the machines package.

::

    LedgerflowError
    ├── IllegalTransitionError      an event that its machine cannot take (corrupt or edited log)
    ├── WorkflowDefinitionError     a workflow declared wrongly (caught at decoration time)
    ├── RunNotFoundError            no run with that id in the store
    ├── RunBusyError                another live process drives the run
    ├── ChainBrokenError            an operation that appends met a run whose hash chain is broken
    ├── UnloggableValueError        a goal or resolution the log cannot hold as JSON
    ├── ResolutionError             a resolve that cannot apply (task not escalated, bad output)
    └── PermanentError              raised BY an agent: do not retry, escalate at once
        └── SecretErasedError       a secret the run needs was erased from the vault
"""

from __future__ import annotations

from collections.abc import Sequence

from ledgerflow.errors import LedgerflowError

__all__ = [
    "AttemptClosedError",
    "BudgetExhaustedError",
    "ChainBrokenError",
    "IllegalTransitionError",
    "PermanentError",
    "RecordedStepError",
    "RecordingMissError",
    "ResolutionError",
    "RunBusyError",
    "RunExistsError",
    "RunNotFoundError",
    "SecretErasedError",
    "StepMismatchError",
    "StepOutcomeUnknownError",
    "UnloggableValueError",
    "WorkflowDefinitionError",
]


class IllegalTransitionError(LedgerflowError):
    """An event asks a machine for a move its transition table does not allow."""

    def __init__(
        self,
        *,
        machine: str,
        trigger: str,
        state: str,
        allowed: Sequence[str],
        seq: int | None = None,
        detail: str = "",
    ) -> None:
        self.machine = machine
        self.trigger = trigger
        self.state = state
        self.allowed = tuple(allowed)
        self.seq = seq
        where = f" at seq {seq}" if seq is not None else ""
        extra = f" {detail}" if detail else ""
        super().__init__(
            f"Cannot apply '{trigger}' to {machine} in state '{state}'{where}; "
            f"allowed from: {', '.join(self.allowed) or 'nowhere'}.{extra}"
        )


class WorkflowDefinitionError(LedgerflowError):
    """A workflow, agent or planner is declared in a way that cannot work."""


class RunNotFoundError(LedgerflowError):
    """The store holds no run with that id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"No run '{run_id}' in this store; list the runs with `ledgerflow runs`."
        )


class RunBusyError(LedgerflowError):
    """Another live process holds the run's lease.

    ``owner`` is the holder (``host:pid:suffix``) and ``expires_in_s`` how long
    its lease still runs unless renewed, when the store can tell (else None).

    Example::

        try:
            await orch.resume(run_id, wf)
        except RunBusyError as exc:
            print(exc.owner, exc.expires_in_s)
    """

    def __init__(
        self, run_id: str, *, owner: str | None = None, expires_in_s: float | None = None,
        operation: str = "resume",
    ) -> None:
        self.run_id = run_id
        self.owner = owner
        self.expires_in_s = expires_in_s
        self.operation = operation
        # Only resume has a --wait on the command line; the API waits for any operation.
        how = ("`ledgerflow resume --wait` (Orchestrator(store, lease_wait_s=...))"
               if operation == "resume" else "Orchestrator(store, lease_wait_s=...)")
        who = f" ('{owner}')" if owner else ""
        left = (f"its lease runs {expires_in_s:.1f} s more unless renewed, so "
                if expires_in_s is not None else "")
        super().__init__(
            f"Run '{run_id}' is being driven by another live process{who}; {left}"
            f"wait for it to finish or its lease to expire, or {operation} with {how}."
        )


class ChainBrokenError(LedgerflowError):
    """A run's stored log fails its hash chain, so nothing is appended to it.

    Raised by every operation that appends to an existing run (resume,
    resolve, cancel, a worker's claim) before it appends anything: an event
    chained onto an edited log would make the edit look legitimate to every
    later reader. ``seq`` is the first bad seq, ``problem`` the chain's own
    sentence about it.

    Example::

        try:
            await orch.resume(run_id, wf)
        except ChainBrokenError as exc:
            alert(exc.run_id, exc.seq)     # investigate with `ledgerflow verify RUN`
    """

    def __init__(self, run_id: str, seq: int, problem: str) -> None:
        self.run_id = run_id
        self.seq = seq
        self.problem = problem
        super().__init__(
            f"Run '{run_id}' has a broken hash chain at seq {seq}, so nothing was appended to "
            f"it: {problem.rstrip('.')}. Inspect it with `ledgerflow verify {run_id}`; a run "
            "whose log was altered is not continued."
        )


class RunExistsError(LedgerflowError):
    """``start`` was given the id of a run that is already in the store.

    Example::

        try:
            await orch.start(wf, goal, run_id="nightly")
        except RunExistsError as exc:
            await orch.resume(exc.run_id, wf)
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"A run '{run_id}' already exists, so it cannot be started again; choose another "
            f"run_id, or continue it with resume('{run_id}')."
        )


class UnloggableValueError(LedgerflowError):
    """A value the log cannot hold as JSON (too deep, NaN, a lone surrogate, ...).

    ``what`` names the value ("the goal"), ``problem`` says what is wrong,
    ``fix`` what to send instead.

    Example::

        try:
            await orch.start(wf, {"budget": float("nan")})
        except UnloggableValueError as exc:
            print(exc.problem)   # it holds NaN at $.budget, which JSON cannot represent
    """

    def __init__(self, what: str, problem: str, fix: str) -> None:
        self.what = what
        self.problem = problem
        self.fix = fix
        super().__init__(f"{what[:1].upper()}{what[1:]} cannot be recorded: {problem}; {fix}.")


class InvalidRunIdError(LedgerflowError, ValueError):
    """A run id given to ``start``/``submit`` that a run may not have.

    A run id names files (``ledgerflow view``'s ``run-<id>.html``), URLs
    (``/runs/<id>`` in the console) and shell arguments, so it is 1 to 128
    letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit.

    Example::

        try:
            await orch.start(wf, goal, run_id="../etc")
        except InvalidRunIdError as exc:
            print(exc)   # The run id '../etc' is not allowed: ...
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        shown = run_id.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        super().__init__(
            f"The run id {shown[:80]!r} is not allowed: a run id is 1 to 128 letters, digits, "
            "'_', '-' and '.', starting with a letter or digit (it names files and URLs); "
            "leave it out to get a generated one.")


class ResolutionError(LedgerflowError):
    """A resolution that cannot be applied; nothing was appended."""


class PermanentError(LedgerflowError):
    """Raise from an agent when retrying cannot help: the task escalates at once.

    Example::

        if not quote:
            raise PermanentError("No fares exist for this route.")
    """


class BudgetExhaustedError(PermanentError):
    """A journaled step refused before it ran: the run's cost budget is spent or its deadline
    passed. The attempt fails with this reason (and, being permanent, is not retried), so one
    run-wide budget bounds every agent, nested steps and cascading retries included.

    Example::

        try:
            answer = await chat.parse(ctx, messages, output=Quote)
        except BudgetExhaustedError as exc:
            print(exc)   # The run's cost budget of 0.05 is spent (0.0512); step ... not called.
    """


class SecretErasedError(PermanentError):
    """A secret the run needs was erased from the store's vault (``ledgerflow secrets erase``).

    The log keeps only a reference to each secret field's value; once the
    vault forgets the value, nothing can hand it to an agent again. An
    attempt that needs it fails permanently (and escalates) naming the
    reference, instead of running on a placeholder.

    Example::

        except SecretErasedError as exc:
            print(exc.refs)   # ['sec_9f3c...']
    """

    def __init__(self, run_id: str, refs: Sequence[str], what: str) -> None:
        self.run_id = run_id
        self.refs = list(refs)
        shown = ", ".join(self.refs[:3]) + (f" and {len(self.refs) - 3} more"
                                           if len(self.refs) > 3 else "")
        super().__init__(
            f"{what} of run {run_id!r} needs secret {shown}, which the store's vault no "
            "longer holds (erased); supply the value again (resolve the task with it, or "
            "start a new run).")


class RecordedStepError(LedgerflowError):
    """A step served from the log whose recorded outcome was an error.

    Live, a step re-raises the exception its function raised; an attempt
    resumed after a crash is served the recorded outcome instead, and the
    original class cannot be rebuilt from a log, so it arrives as this, with
    the recorded stable class name in ``error_type`` and its ``message``.

    Example::

        except RecordedStepError as exc:
            if exc.error_type == "billing.CardDeclined": ...
    """

    def __init__(self, name: str, error_type: str, message: str) -> None:
        self.name = name
        self.error_type = error_type
        self.message = message
        super().__init__(f"Step '{name}' failed when it ran ({error_type}: {message}); "
                         "the recorded outcome is served again, not the call.")


class StepMismatchError(PermanentError):
    """A resumed attempt asked for a step that differs from what the log recorded at that
    point, and a side-effecting step was recorded at or after it: going on live could do that
    side effect twice, so the task is escalated instead (the agent's code or input changed).
    """


class StepOutcomeUnknownError(PermanentError):
    """A side-effecting step started and recorded no outcome: it is never run again.

    A task's attempt in that state is escalated on resume; the planner's
    call fails with this, so the plan is rejected with the reason.
    """


class RecordingMissError(PermanentError):
    """An offline run asked for a step the recording does not hold.

    ``name`` is the step's name and ``difference`` a unified diff of its
    request against the closest recorded request (``""`` if none had the name).

    Example::

        except RecordingMissError as exc:
            print(exc.difference)
    """

    def __init__(self, name: str, difference: str, *, recorded_names: list[str]) -> None:
        self.name = name
        self.difference = difference
        self.recorded_names = recorded_names
        if difference:
            detail = f"closest recorded request of that name differs:\n{difference}"
        else:
            detail = ("no recorded step has that name (recorded: "
                      f"{', '.join(sorted(set(recorded_names))) or 'none'})")
        super().__init__(f"Step '{name}' asked for a request the recording does not hold; "
                         f"{detail}")


class AttemptClosedError(LedgerflowError):
    """A step of an attempt the run no longer waits for (it timed out, the run ended)."""
