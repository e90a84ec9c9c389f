"""The task exchange's types and argument checks, shared by both backends.

A run's single writer (the worker holding its lease) OFFERS dispatched task
attempts; any worker of the pool CLAIMS one (within the per-agent limits),
runs the agent and POSTS facts (journaled steps, the outcome); the owner
TAKES them, appends its decisions to the log and ANSWERS each fact, which the
executor polls. ``flow_slots`` is a small pool-wide counting semaphore.

Example::

    await store.offer_tasks("r1", [TaskOffer("price", 1, "travel", "pricing")], seq=7, fence=3)
    claim = await store.claim_task("w2", 30, workflows=["travel"])
    fact_id = await store.post_task_fact(claim, "outcome", b'{"type": "OutputReceived"}')
    await store.answer_task_facts("r1", {fact_id: True}, fence=3)
    assert await store.task_fact_answer(fact_id, claim) is True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from .appending import is_count
from .errors import EventTooLargeError, InvalidQueryError, TaskClaimLostError
from .rules import MAX_SEQ

__all__ = [
    "FACT_KINDS",
    "RECEIPT_TTL_S",
    "AgentLimit",
    "TaskClaim",
    "answer_of",
    "claim_key",
    "claim_lost",
    "TaskExchangeRow",
    "TaskFact",
    "TaskOffer",
    "check_answers",
    "check_claim",
    "check_fact",
    "check_keep",
    "check_limits",
    "check_name",
    "check_offers",
    "check_slot",
]

FACT_KINDS = ("step", "outcome")
"""What a posted fact may be: a journaled step, or the attempt's final outcome."""

RECEIPT_TTL_S = 300.0
"""How long an answered outcome fact outlives its offer, so the executor can read its answer."""


@dataclass(frozen=True, slots=True)
class TaskOffer:
    """One dispatched task attempt the run's owner offers to the pool.

    Example::

        TaskOffer(task_id="price", attempt=1, label="travel", agent="pricing")
    """

    task_id: str
    attempt: int
    """The attempt number, >= 1."""
    label: str
    """The run's workflow name (claimers ask for the workflows they can run)."""
    agent: str


@dataclass(frozen=True, slots=True)
class AgentLimit:
    """A pool-wide limit on one (workflow, agent): live claims and claims per minute.

    Example::

        limits = {("travel", "pricing"): AgentLimit(max_concurrent=2, per_minute=60)}
    """

    max_concurrent: int | None = None
    per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class TaskClaim:
    """An offer a worker claimed; pass it back to renew, post facts and poll answers.

    ``token`` grows by one each time the offer is (re)claimed (1 on the first
    claim); once another claim superseded this one, its calls raise
    :class:`TaskClaimLostError`. ``seq`` is the owner's log position when it
    offered (the task's ``TaskDispatched`` is at or before it).

    Example::

        claim = await store.claim_task("w2", 30, workflows=["travel"])
        claim.task_id, claim.attempt, claim.token   # ('price', 1, 1)
    """

    run_id: str
    task_id: str
    attempt: int
    label: str
    agent: str
    owner: str
    token: int
    seq: int
    fence: int = 0
    """The fence of the run lease the offer was (last) made under (0: unfenced)."""


@dataclass(frozen=True, slots=True)
class TaskFact:
    """A fact an executor posted and the run's owner has not answered yet.

    Example::

        for fact in await store.task_facts("r1"):
            fact.id, fact.kind, fact.data   # (12, 'step', b'{...}')
    """

    id: int
    run_id: str
    task_id: str
    attempt: int
    token: int
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class TaskExchangeRow:
    """One offer as :meth:`EventStore.task_exchange` shows it (for display and tests).

    ``claimed_by`` is None when the offer is unclaimed or its claim expired.

    Example::

        [(r.task_id, r.claimed_by) for r in await store.task_exchange("r1")]
    """

    run_id: str
    task_id: str
    attempt: int
    label: str
    agent: str
    claimed_by: str | None
    token: int
    seq: int


def check_name(operation: str, what: str, value: object) -> str:
    """``value`` if it is a non-empty str without NUL, else :class:`InvalidQueryError`.

    Example::

        >>> check_name("offer tasks", "the run id", "r1")
        'r1'
    """
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidQueryError(
            operation, f"{what} must be a non-empty str without NUL, not {value!r}"
        )
    return value


def _check_count(operation: str, what: str, value: object, minimum: int) -> int:
    if not is_count(value) or not minimum <= value <= MAX_SEQ:
        raise InvalidQueryError(operation, f"{what} must be an int >= {minimum}, not {value!r}")
    return value


def check_offers(run_id: object, offers: object, seq: object) -> tuple[str, list[TaskOffer], int]:
    """The run id, the offers (distinct attempts) and ``seq``, or :class:`InvalidQueryError`."""
    operation = f"offer tasks of run {run_id!r}"
    run = check_name(operation, "the run id", run_id)
    number = _check_count(operation, "seq", seq, 0)
    if isinstance(offers, str | bytes) or not isinstance(offers, Sequence):
        raise InvalidQueryError(operation, f"offers must be a list of TaskOffer, not {offers!r}")
    keys: set[tuple[str, int]] = set()
    for offer in offers:
        if not isinstance(offer, TaskOffer):
            raise InvalidQueryError(operation, f"an offer must be a TaskOffer, not {offer!r}")
        check_name(operation, "an offer's task_id", offer.task_id)
        _check_count(operation, "an offer's attempt", offer.attempt, 1)
        check_name(operation, "an offer's label", offer.label)
        check_name(operation, "an offer's agent", offer.agent)
        key = (offer.task_id, offer.attempt)
        if key in keys:  # one upsert statement cannot touch a row twice
            raise InvalidQueryError(operation, f"attempt {key} is offered twice")
        keys.add(key)
    return run, list(offers), number


def check_limits(
    operation: str, limits: object
) -> dict[tuple[str, str], AgentLimit]:
    """``limits`` as a dict keyed by (workflow, agent), or :class:`InvalidQueryError`."""
    if limits is None:
        return {}
    if not isinstance(limits, Mapping):
        raise InvalidQueryError(operation, f"limits must be a mapping, not {limits!r}")
    out: dict[tuple[str, str], AgentLimit] = {}
    for key, limit in limits.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise InvalidQueryError(
                operation, f"a limit's key must be a (workflow, agent) tuple, not {key!r}")
        check_name(operation, "a limit's workflow", key[0])
        check_name(operation, "a limit's agent", key[1])
        if not isinstance(limit, AgentLimit):
            raise InvalidQueryError(operation, f"a limit must be an AgentLimit, not {limit!r}")
        for what, value in (("max_concurrent", limit.max_concurrent),
                            ("per_minute", limit.per_minute)):
            if value is not None:
                _check_count(operation, f"{key}'s {what}", value, 1)
        if limit.max_concurrent is not None or limit.per_minute is not None:
            out[(key[0], key[1])] = limit
    return out


def check_claim(operation: str, claim: object) -> TaskClaim:
    """``claim`` if it is a :class:`TaskClaim`, else :class:`InvalidQueryError`."""
    if not isinstance(claim, TaskClaim):
        raise InvalidQueryError(operation, f"the claim must be a TaskClaim, not {claim!r}")
    return claim


def check_fact(claim: object, kind: object, data: object, max_event_bytes: int) -> TaskClaim:
    """The claim of a fact to post, once ``kind`` and ``data`` are known good."""
    operation = "post a task fact"
    checked = check_claim(operation, claim)
    if kind not in FACT_KINDS:
        raise InvalidQueryError(operation, f"kind must be 'step' or 'outcome', not {kind!r}")
    if not isinstance(data, bytes):
        raise InvalidQueryError(operation, f"data must be bytes, not {type(data).__name__}")
    if len(data) > max_event_bytes:
        raise EventTooLargeError(
            checked.run_id, f"task fact ({kind}) of {checked.task_id}", len(data), max_event_bytes
        )
    return checked


def check_answers(run_id: object, answers: object) -> tuple[str, dict[int, bool]]:
    """The run id and ``answers`` as {fact id: bool}, or :class:`InvalidQueryError`."""
    operation = f"answer task facts of run {run_id!r}"
    run = check_name(operation, "the run id", run_id)
    if not isinstance(answers, Mapping):
        raise InvalidQueryError(operation, f"answers must be a mapping, not {answers!r}")
    out: dict[int, bool] = {}
    for fact_id, answer in answers.items():
        _check_count(operation, "a fact id", fact_id, 1)
        if not isinstance(answer, bool):
            raise InvalidQueryError(operation, f"an answer must be a bool, not {answer!r}")
        out[fact_id] = answer
    return run, out


def check_keep(run_id: object, keep: object) -> tuple[str, set[tuple[str, int]]]:
    """The run id and the (task_id, attempt) pairs a withdrawal keeps."""
    operation = f"withdraw tasks of run {run_id!r}"
    run = check_name(operation, "the run id", run_id)
    if isinstance(keep, str | bytes) or not isinstance(keep, Collection):
        raise InvalidQueryError(operation, f"keep must be a collection of pairs, not {keep!r}")
    out: set[tuple[str, int]] = set()
    for pair in keep:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise InvalidQueryError(
                operation, f"keep holds (task_id, attempt) pairs, not {pair!r}")
        out.add((check_name(operation, "a kept task_id", pair[0]),
                 _check_count(operation, "a kept attempt", pair[1], 1)))
    return run, out


def check_slot(key: object, limit: object) -> tuple[str, int]:
    """A slot's key and limit, or :class:`InvalidQueryError`."""
    operation = f"acquire slot {key!r}"
    return check_name(operation, "the key", key), _check_count(operation, "limit", limit, 1)


def claim_key(claim: TaskClaim) -> tuple[str, str, int, int, str]:
    """What identifies a claim in the SQL: run, task, attempt, token and owner."""
    return (claim.run_id, claim.task_id, claim.attempt, claim.token, claim.owner)


def claim_lost(claim: TaskClaim) -> TaskClaimLostError:
    """The error for a claim that is no longer its offer's current one."""
    return TaskClaimLostError(claim.run_id, claim.task_id, claim.attempt, claim.token)


def answer_of(row: Sequence[object], claim: TaskClaim, fact_id: int) -> bool | None:
    """A fact's answer from its row ``(answer, run_id, task_id, attempt, token, current)``.

    True or False once answered; None while not; :class:`TaskClaimLostError`
    when unanswered and the claim is no longer current. Both backends fetch
    the row their own way and decide here.
    """
    answer, run_id, task_id, attempt, token, current = row
    if run_id is not None and (run_id, task_id, attempt, token) != claim_key(claim)[:4]:
        raise InvalidQueryError(
            "poll a task fact's answer", f"fact {fact_id} was not posted under this claim")
    if answer is not None:
        return bool(answer)
    if not current:
        raise claim_lost(claim)
    if run_id is None:
        raise InvalidQueryError("poll a task fact's answer", f"there is no fact {fact_id}")
    return None
