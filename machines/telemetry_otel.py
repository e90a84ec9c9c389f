"""OpenTelemetry traces of runs (extra ``ledgerflow[otel]``): the one module importing it.

:class:`OtelObserver` is a :class:`~ledgerflow.machines.observers.RunObserver`:
it turns the durable batches a driver reports into spans, so a trace shows
what the log holds and never more. A run is a trace whose root span is
``ledgerflow.run <workflow>``; each task attempt is a child span
``ledgerflow.attempt <task_id>#<attempt>`` from its ``TaskDispatched`` to its
outcome (``OutputReceived``, ``AgentFailed``; error status on a failure or a
rejected output); each journaled step (``StepRecorded``) is a child of its
attempt, from ``at - duration_ms`` to ``at``. A model call (a step whose
``detail`` says ``kind: llm``) is named ``chat <model>`` and carries the
GenAI semantic-convention attributes (``gen_ai.operation.name``,
``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens``,
and ``gen_ai.provider.name``/``gen_ai.system`` when the detail names a
``provider``). Every time is the time the log recorded (the batch's ``at``),
not the wall clock, so :func:`export_run`, which feeds a recorded log through
the same observer, draws the same tree afterwards.

The root span ends at ``RunCompleted``/``RunFailed``/``RunCancelled``, or
when the run stops being driven here: it waits on an escalation, or is queued
for a worker. If the same observer sees the run again later (a resolution
drives it on), the new ``ledgerflow.run`` span is a child of the last one:
still one trace. A run resumed in another process starts a new trace there.

Open spans are held in memory, bounded (``max_open_spans``): past the bound
the oldest is ended at once, marked ``ledgerflow.incomplete``, with a
warning, so a run that never finishes in this process cannot grow memory
forever. Nothing here raises into the run (a failure is logged).

Import it explicitly (the core install has no OpenTelemetry)::

    from ledgerflow.machines.telemetry_otel import OtelObserver, export_run

    orch = Orchestrator(store, observers=[OtelObserver()])   # the global TracerProvider
    await export_run(store, "c17e3d9b39e0", tracer_provider=provider)   # after the fact
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.fsm import RunStatus

__all__ = ["DEFAULT_MAX_OPEN_SPANS", "DEFAULT_MAX_RUNS", "OtelObserver", "export_run"]

log = logging.getLogger("ledgerflow")

#: Open spans (run roots and attempts) held at most, over every run.
DEFAULT_MAX_OPEN_SPANS: Final = 10_000
#: Runs whose names and task agents are remembered at most (oldest forgotten first).
DEFAULT_MAX_RUNS: Final = 1_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TERMINAL: Final = frozenset(s.value for s in RunStatus if s.terminal)
#: The run leaves this process's hands: it waits on a person, or on a worker.
_PAUSED: Final = frozenset({RunStatus.WAITING.value, RunStatus.QUEUED.value})
#: Where a key names the run's root span rather than an attempt.
_ROOT: Final = ""

_Key = tuple[str, str, int]  # (run_id, task_id or _ROOT, attempt)


def _ns(at: datetime) -> int:
    """Nanoseconds since the epoch, in integers (a float loses the microseconds)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1) * 1_000


def _version() -> str:
    try:
        return version("ledgerflow")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return ""


@dataclass(slots=True)
class _Run:
    """What is remembered of one run between batches."""

    run_id: str
    workflow: str = ""
    #: task id -> agent, from the accepted plan.
    agents: dict[str, str] = field(default_factory=dict)
    #: The last root span, kept after it ended so that a continuation stays in its trace.
    last_root: Span | None = None
    #: Attempts whose outcome this batch recorded: ended once the batch is read,
    #: so that a rejection decided in the same batch still marks them.
    closing: list[_Key] = field(default_factory=list)


class OtelObserver:
    """A :class:`~ledgerflow.machines.observers.RunObserver` that records runs as traces.

    ``tracer_provider`` defaults to the global one (``opentelemetry.trace``).
    See the module's docstring for the spans and their attributes.

    Example::

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        worker = Worker(store, [wf], observers=[OtelObserver(provider)])
    """

    def __init__(self, tracer_provider: TracerProvider | None = None, *,
                 max_open_spans: int = DEFAULT_MAX_OPEN_SPANS,
                 max_runs: int = DEFAULT_MAX_RUNS) -> None:
        if max_open_spans < 1 or max_runs < 1:
            raise ValueError("max_open_spans and max_runs must be at least 1.")
        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer: Tracer = provider.get_tracer("ledgerflow", _version())
        self.max_open_spans = max_open_spans
        self.max_runs = max_runs
        #: Open spans, oldest first: what the bound drops first.
        self._open: OrderedDict[_Key, Span] = OrderedDict()
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        #: Spans ended early by the bound, over the observer's life.
        self.dropped = 0

    # -- the observer protocol ------------------------------------------

    def committed(self, run_id: str, events: Sequence[ev.Event], *, first_seq: int,
                  at: datetime) -> None:
        """Record one durable batch of ``run_id`` as spans; never raises."""
        try:
            self._batch(run_id, events, first_seq, _ns(at))
        except Exception:
            log.warning("OpenTelemetry observer failed on run %s at seq %d; its trace may "
                        "be incomplete, the run goes on.", run_id, first_seq, exc_info=True)

    def close(self, at: datetime | None = None) -> None:
        """End every open span now (or at ``at``), marked incomplete: at process shutdown.

        Example::

            observer.close()    # before the TracerProvider's shutdown()
        """
        end = _ns(at or datetime.now(UTC))
        while self._open:
            self._end_incomplete(next(iter(self._open)), end)

    # -- one batch ---------------------------------------------------------

    def _batch(self, run_id: str, events: Sequence[ev.Event], first_seq: int, t: int) -> None:
        run = self._run(run_id, t)
        for event in events:
            # Named before the root starts: a sampler sees the span's name at its start.
            if isinstance(event, ev.WorkflowGoalEvent) and event.workflow and not run.workflow:
                run.workflow = event.workflow
        root: Span | None = None
        for offset, event in enumerate(events):
            seq = first_seq + offset
            if root is None:
                root = self._root(run_id, run, seq, t)
            if isinstance(event, ev.TaskEvent):
                self._task_event(run, root, event, seq, t)
            elif isinstance(event, ev.WorkflowGoalEvent):
                self._named(run, root, event.workflow)
            elif isinstance(event, ev.PlanAccepted):
                run.agents = {task.id: task.agent for task in event.tasks}
            if event.machine == "run" and event.dst:
                root.set_attribute("ledgerflow.status", event.dst)
                if event.dst in _TERMINAL or event.dst in _PAUSED:
                    self._end_root(run, root, event, seq, t)
                    root = None  # what follows in this batch continues the trace
        self._close_outcomes(run, t)

    def _close_outcomes(self, run: _Run, t: int) -> None:
        """End the attempts whose outcome the batch recorded (see :attr:`_Run.closing`)."""
        for key in run.closing:
            span = self._open.pop(key, None)
            if span is not None:
                span.end(end_time=t)
        run.closing.clear()

    def _run(self, run_id: str, t: int) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(run_id)
            while len(self._runs) > self.max_runs:
                # A run forgotten here would otherwise keep its spans open forever.
                forgotten, _ = self._runs.popitem(last=False)
                for key in [k for k in self._open if k[0] == forgotten]:
                    self._end_incomplete(key, t)
        else:
            self._runs.move_to_end(run_id)
        return run

    def _root(self, run_id: str, run: _Run, seq: int, t: int) -> Span:
        """The run's open root span, started at this batch if there is none."""
        key = (run_id, _ROOT, 0)
        span = self._open.get(key)
        if span is not None:
            return span
        # An empty context: a run is its own trace, not a child of whatever
        # span the caller happens to be in.
        parent = Context() if run.last_root is None else trace.set_span_in_context(run.last_root)
        attributes: dict[str, Any] = {"ledgerflow.run_id": run_id, "ledgerflow.seq": seq}
        if run.workflow:
            attributes["ledgerflow.workflow"] = run.workflow
        if run.last_root is not None:
            attributes["ledgerflow.continued"] = True
        span = self.tracer.start_span(_root_name(run.workflow), context=parent,
                                      kind=SpanKind.INTERNAL, attributes=attributes,
                                      start_time=t)
        self._hold(key, span, t)
        return span

    def _named(self, run: _Run, root: Span, workflow: str) -> None:
        if workflow and workflow != run.workflow:
            run.workflow = workflow
            root.update_name(_root_name(workflow))
            root.set_attribute("ledgerflow.workflow", workflow)

    def _end_root(self, run: _Run, root: Span, event: ev.Event, seq: int, t: int) -> None:
        run_id = run.run_id
        self._close_outcomes(run, t)
        # Attempts still open when the run stops here will not hear of their outcome.
        for key in [k for k in self._open if k[0] == run_id and k[1] != _ROOT]:
            self._end_attempt(key, t, f"the run became {event.dst} first")
        if event.dst == RunStatus.FAILED.value:
            root.set_status(Status(StatusCode.ERROR, event.reason or "the run failed"))
        root.set_attribute("ledgerflow.last_seq", seq)
        self._open.pop((run_id, _ROOT, 0), None)
        root.end(end_time=t)
        if event.dst in _TERMINAL:
            self._runs.pop(run_id, None)
        else:
            run.last_root = root

    # -- tasks -------------------------------------------------------------

    def _task_event(self, run: _Run, root: Span, event: ev.TaskEvent, seq: int, t: int) -> None:
        run_id = run.run_id
        if isinstance(event, ev.TaskDispatched):
            self._dispatched(run, root, event, seq, t)
        elif isinstance(event, ev.StepRecorded):
            self._step(run_id, root, event, seq, t)
        elif isinstance(event, ev.OutputReceived | ev.AgentFailed):
            key = (run_id, event.task_id, event.attempt)
            span = self._open.get(key)
            if span is None:
                return
            span.set_attribute("ledgerflow.tokens", event.tokens)
            span.set_attribute("ledgerflow.cost", event.cost)
            if isinstance(event, ev.AgentFailed):
                span.set_attribute("ledgerflow.outcome", "failed")
                span.set_attribute("error.type", event.error_type)
                if event.timed_out:
                    span.set_attribute("ledgerflow.timed_out", True)
                span.set_status(Status(StatusCode.ERROR,
                                       f"{event.error_type}: {event.message}".rstrip(": ")))
            else:
                span.set_attribute("ledgerflow.outcome", "received")
            run.closing.append(key)
        elif isinstance(event, ev.OutputRejected | ev.OutputAccepted):
            span = self._open.get((run_id, event.task_id, event.attempt))
            if span is None:
                return
            if isinstance(event, ev.OutputRejected):
                span.set_attribute("ledgerflow.outcome", "rejected")
                span.set_status(Status(StatusCode.ERROR, "output rejected: "
                                       + ("; ".join(event.errors) or event.reason)))
            else:
                span.set_attribute("ledgerflow.outcome", "accepted")
        elif isinstance(event, ev.TaskEscalated):
            # Escalated while dispatched (a side effect whose outcome is unknown):
            # no outcome will come for the attempt.
            for key in [k for k in self._open if k[0] == run_id and k[1] == event.task_id]:
                if key not in run.closing:
                    self._end_attempt(key, t, f"escalated ({event.kind})")

    def _dispatched(self, run: _Run, root: Span, event: ev.TaskDispatched, seq: int,
                    t: int) -> None:
        run_id = run.run_id
        key = (run_id, event.task_id, event.attempt)
        if key in self._open:
            # The same attempt dispatched again: its first outcome was lost.
            self._end_attempt(key, t, "dispatched again (its outcome was lost)")
        attributes: dict[str, Any] = {
            "ledgerflow.run_id": run_id, "ledgerflow.task_id": event.task_id,
            "ledgerflow.attempt": event.attempt, "ledgerflow.seq": seq,
        }
        agent = run.agents.get(event.task_id)
        if agent:
            attributes["ledgerflow.agent"] = agent
        span = self.tracer.start_span(
            f"ledgerflow.attempt {event.task_id}#{event.attempt}",
            context=trace.set_span_in_context(root), kind=SpanKind.INTERNAL,
            attributes=attributes, start_time=t)
        self._hold(key, span, t)

    def _end_attempt(self, key: _Key, t: int, why: str) -> None:
        span = self._open.pop(key, None)
        if span is not None:
            span.set_attribute("ledgerflow.outcome", "none")
            span.set_status(Status(StatusCode.ERROR, f"no outcome: {why}"))
            span.end(end_time=t)

    def _step(self, run_id: str, root: Span, event: ev.StepRecorded, seq: int, t: int) -> None:
        parent = self._open.get((run_id, event.task_id, event.attempt)) or root
        detail = event.detail
        attributes: dict[str, Any] = {
            "ledgerflow.run_id": run_id, "ledgerflow.task_id": event.task_id,
            "ledgerflow.attempt": event.attempt, "ledgerflow.seq": seq,
            "ledgerflow.step.name": event.name, "ledgerflow.step.index": event.index,
            "ledgerflow.tokens": event.tokens, "ledgerflow.cost": event.cost,
            "ledgerflow.duration_ms": event.duration_ms,
        }
        if event.side_effect:
            attributes["ledgerflow.step.side_effect"] = True
        if "served_from" in detail or "served_from_attempt" in detail:
            attributes["ledgerflow.step.served"] = True
        name = f"ledgerflow.step {event.name}"
        kind = SpanKind.INTERNAL
        if detail.get("kind") == "llm":
            model = detail.get("model")
            name = f"chat {model}" if isinstance(model, str) and model else "chat"
            kind = SpanKind.CLIENT
            attributes.update(_genai(detail))
        start = t - max(0, round(event.duration_ms * 1_000_000))
        span = self.tracer.start_span(name, context=trace.set_span_in_context(parent),
                                      kind=kind, attributes=attributes, start_time=start)
        if event.error_type:
            span.set_attribute("error.type", event.error_type)
            span.set_status(Status(StatusCode.ERROR,
                                   f"{event.error_type}: {event.message}".rstrip(": ")))
        span.end(end_time=t)

    # -- the bound -----------------------------------------------------------

    def _hold(self, key: _Key, span: Span, t: int) -> None:
        self._open[key] = span
        dropped = 0
        while len(self._open) > self.max_open_spans:
            self._end_incomplete(self._oldest(), t)
            dropped += 1
        if dropped:
            self.dropped += dropped
            log.warning("OpenTelemetry observer holds more than %d open spans: ended the "
                        "oldest %d early, marked ledgerflow.incomplete (%d so far).",
                        self.max_open_spans, dropped, self.dropped)

    def _oldest(self) -> _Key:
        """The oldest open attempt, else the oldest root.

        A root is kept over attempts: dropping it would start a new trace at the
        run's next batch. Roots are few (at most one per remembered run).
        """
        for key in self._open:
            if key[1] != _ROOT:
                return key
        return next(iter(self._open))

    def _end_incomplete(self, key: _Key, t: int) -> None:
        span = self._open.pop(key, None)
        if span is not None:
            span.set_attribute("ledgerflow.incomplete", True)
            span.end(end_time=t)


def _root_name(workflow: str) -> str:
    return f"ledgerflow.run {workflow}" if workflow else "ledgerflow.run"


def _genai(detail: dict[str, Any]) -> dict[str, Any]:
    """The GenAI semantic-convention attributes a model call's ``detail`` supports."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    model = detail.get("model")
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = model
    for key in ("input_tokens", "output_tokens"):
        value = detail.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            attributes[f"gen_ai.usage.{key}"] = value
    provider = detail.get("provider", detail.get("system"))
    if isinstance(provider, str) and provider:
        # gen_ai.system is the older name of gen_ai.provider.name: backends read either.
        attributes["gen_ai.provider.name"] = provider
        attributes["gen_ai.system"] = provider
    return attributes


async def export_run(store: EventStore, run_id: str,
                     tracer_provider: TracerProvider | None = None) -> None:
    """Record a run already in ``store`` as a trace, after the fact, from its log.

    The log's events go through :class:`OtelObserver` in the batches they
    were appended in (consecutive envelopes with one recorded time), with
    those times; spans still open at the end (a run cut off mid-way) are
    ended at its last event, marked incomplete.

    Example::

        await export_run(store, "c17e3d9b39e0", tracer_provider=provider)
        provider.force_flush()
    """
    observer = OtelObserver(tracer_provider)
    envelopes = await store.read_all(run_id)
    batch: list[ev.Event] = []
    first_seq = 0
    batch_at: datetime | None = None
    for envelope in envelopes:
        if batch and envelope.at != batch_at:
            observer.committed(run_id, batch, first_seq=first_seq, at=batch_at or envelope.at)
            batch = []
        if not batch:
            first_seq, batch_at = envelope.seq, envelope.at
        batch.append(ev.decode_logged(envelope.data, envelope.seq, envelope.run_id))
    if batch and batch_at is not None:
        observer.committed(run_id, batch, first_seq=first_seq, at=batch_at)
    if envelopes:
        observer.close(envelopes[-1].at)
