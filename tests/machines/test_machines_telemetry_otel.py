"""The OpenTelemetry adapter: a run is one trace, an attempt a span (a retry two, the
failed one in error), a journaled model call a span of its attempt with the GenAI
attributes, every time the log's; export_run draws the same tree from the log; a
failing observer never breaks a run; open spans are bounded."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import (
    AgentContext,
    Metered,
    Orchestrator,
    PermanentError,
    RetryPolicy,
    RunStatus,
    Worker,
    Workflow,
)
from ledgerflow.machines import events as ev
from ledgerflow.machines.telemetry_otel import OtelObserver, export_run


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    answer: str


LLM_DETAIL = {"kind": "llm", "model": "gpt-x", "input_tokens": 3, "output_tokens": 5,
              "provider": "openai"}


def call_model(prompt: str) -> Metered:
    return Metered(f"echo {prompt}", tokens=8, cost=0.01, detail=LLM_DETAIL)


wf = Workflow("otel-fixture", goal=Question)


@wf.agent(input=Question, output=Answer, retry=RetryPolicy(max_attempts=2, backoff_s=0))
async def ask(inp: Question, ctx: AgentContext) -> Answer:
    said = await ctx.step("model", call_model, inp.text)
    if ctx.attempt == 1:
        raise RuntimeError("the model's first answer was cut off")
    return Answer(answer=str(said))


@wf.agent(input=Answer, output=Answer)
async def shout(inp: Answer, ctx: AgentContext) -> Answer:
    return Answer(answer=inp.answer.upper())


@wf.planner
async def plan(goal: Question, ctx: AgentContext) -> Plan:
    return Plan(tasks=[
        Task(id="q", agent="ask", inputs={"text": "$goal.text"}),
        Task(id="loud", agent="shout", needs=["q"], inputs={"answer": "$q.answer"}),
    ])


stuck = Workflow("otel-stuck", goal=Question)


@stuck.agent(input=Question, output=Answer)
async def refuse(inp: Question, ctx: AgentContext) -> Answer:
    raise PermanentError("needs a person")


@stuck.planner
async def plan_stuck(goal: Question, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id="r", agent="refuse", inputs={"text": "$goal.text"})])


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def ns(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def by_name(spans: tuple[ReadableSpan, ...] | list[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [s.name for s in spans]
    return named


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def tree(spans: tuple[ReadableSpan, ...]) -> list[tuple[Any, ...]]:
    """The spans without their generated ids: name, parent's name, kind, status, times, attrs."""
    names = {span_id(s): s.name for s in spans}
    return sorted((s.name, names.get(parent_id(s) or 0), s.kind.name, s.status.status_code.name,
                   s.start_time, s.end_time, sorted((s.attributes or {}).items()))
                  for s in spans)


async def test_a_run_is_one_trace_with_a_span_per_attempt_and_step(
    store: EventStore, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    run = await Orchestrator(store, observers=[OtelObserver(provider)]).start(
        wf, Question(text="hi"))
    assert run.status == RunStatus.COMPLETED
    spans = exporter.get_finished_spans()
    assert len({trace_id(s) for s in spans}) == 1
    roots = by_name([s for s in spans if s.name.startswith("ledgerflow.run")])
    root = roots["ledgerflow.run otel-fixture"]
    assert root.parent is None
    assert (root.attributes or {})["ledgerflow.run_id"] == run.run_id
    assert (root.attributes or {})["ledgerflow.status"] == "completed"
    attempts = by_name([s for s in spans if s.name.startswith("ledgerflow.attempt")])
    assert sorted(attempts) == ["ledgerflow.attempt loud#1", "ledgerflow.attempt q#1",
                                "ledgerflow.attempt q#2"]
    failed, retried = attempts["ledgerflow.attempt q#1"], attempts["ledgerflow.attempt q#2"]
    assert failed.status.status_code == StatusCode.ERROR
    assert "cut off" in (failed.status.description or "")
    assert retried.status.status_code == StatusCode.UNSET
    for attempt in attempts.values():
        assert parent_id(attempt) == span_id(root)
    assert dict(failed.attributes or {}) | {"ledgerflow.seq": 0} == {
        "ledgerflow.run_id": run.run_id, "ledgerflow.task_id": "q", "ledgerflow.attempt": 1,
        "ledgerflow.agent": "ask", "ledgerflow.seq": 0, "ledgerflow.tokens": 0,
        "ledgerflow.cost": 0.0, "ledgerflow.outcome": "failed",
        "error.type": "builtins.RuntimeError"}

    # One model call per attempt (a retry after a failure calls again), a child of it.
    steps = [s for s in spans if s.name == "chat gpt-x"]
    assert sorted(parent_id(s) or 0 for s in steps) == sorted(
        [span_id(failed), span_id(retried)])
    for step in steps:
        attrs = step.attributes or {}
        assert step.kind == SpanKind.CLIENT
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "gpt-x"
        assert attrs["gen_ai.usage.input_tokens"] == 3
        assert attrs["gen_ai.usage.output_tokens"] == 5
        assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "openai"
        assert attrs["ledgerflow.step.name"] == "model"
        assert attrs["ledgerflow.tokens"] == 8
        assert step.end_time is not None
        assert step.start_time is not None
        assert step.end_time - step.start_time == round(
            float(attrs["ledgerflow.duration_ms"]) * 1_000_000)  # type: ignore[arg-type]

    # Every time is the log's: a span starts and ends at its events' recorded times.
    envelopes = await store.read_all(run.run_id)
    at = {(type(e).__name__, getattr(e, "task_id", ""), getattr(e, "attempt", 0)): env.at
          for env in envelopes for e in [ev.decode_event(env.data)]}
    assert failed.start_time == ns(at[("TaskDispatched", "q", 1)])
    assert failed.end_time == ns(at[("AgentFailed", "q", 1)])
    assert retried.end_time == ns(at[("OutputReceived", "q", 2)])
    step_ends = sorted(s.end_time or 0 for s in steps)
    assert step_ends == sorted(ns(at[("StepRecorded", "q", n)]) for n in (1, 2))
    assert root.start_time == ns(envelopes[0].at)
    assert root.end_time == ns(envelopes[-1].at)
    seqs = {(type(e).__name__, getattr(e, "task_id", ""), getattr(e, "attempt", 0)): env.seq
            for env in envelopes for e in [ev.decode_event(env.data)]}
    assert (retried.attributes or {})["ledgerflow.seq"] == seqs[("TaskDispatched", "q", 2)]


async def test_export_run_draws_the_same_tree_from_the_log(
    store: EventStore, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    run = await Orchestrator(store, observers=[OtelObserver(provider)]).start(
        wf, Question(text="again"))
    live = exporter.get_finished_spans()
    exporter.clear()
    await export_run(store, run.run_id, tracer_provider=provider)
    after = exporter.get_finished_spans()
    assert tree(after) == tree(live)
    assert len({trace_id(s) for s in after}) == 1
    assert {trace_id(s) for s in after} != {trace_id(s) for s in live}  # a trace of its own


async def test_a_waiting_run_ends_its_root_and_goes_on_in_the_same_trace(
    store: EventStore, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    orch = Orchestrator(store, observers=[OtelObserver(provider)])
    run = await orch.start(stuck, Question(text="x"))
    assert run.status == RunStatus.WAITING
    (first,) = [s for s in exporter.get_finished_spans() if s.name == "ledgerflow.run otel-stuck"]
    assert (first.attributes or {})["ledgerflow.status"] == "waiting"
    (attempt,) = [s for s in exporter.get_finished_spans() if s.name.startswith("ledgerflow.att")]
    assert attempt.status.status_code == StatusCode.ERROR

    done = await orch.resolve(run.run_id, "r", output={"answer": "by hand"}, by="test")
    assert done.status == RunStatus.COMPLETED
    roots = [s for s in exporter.get_finished_spans() if s.name == "ledgerflow.run otel-stuck"]
    assert len(roots) == 2
    later = next(s for s in roots if s is not first)
    assert parent_id(later) == span_id(first)
    assert trace_id(later) == trace_id(first)
    assert (later.attributes or {})["ledgerflow.continued"] is True
    assert (later.attributes or {})["ledgerflow.status"] == "completed"


async def test_a_worker_traces_the_runs_it_drives(
    store: EventStore, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    run_id = await Orchestrator(store, observers=[OtelObserver(provider)]).submit(
        wf, Question(text="pool"))
    (queued,) = exporter.get_finished_spans()  # the submitter's part: queued, then gone
    assert queued.name == "ledgerflow.run otel-fixture"
    assert (queued.attributes or {})["ledgerflow.status"] == "queued"
    exporter.clear()
    stats = await Worker(store, [wf], poll_s=0.05, observers=[OtelObserver(provider)]).run(
        until_idle=True)
    assert stats.finished == 1
    spans = exporter.get_finished_spans()
    assert len({trace_id(s) for s in spans}) == 1
    names = sorted(s.name for s in spans)
    assert names == ["chat gpt-x", "chat gpt-x", "ledgerflow.attempt loud#1",
                     "ledgerflow.attempt q#1", "ledgerflow.attempt q#2",
                     "ledgerflow.run otel-fixture"]
    (root,) = [s for s in spans if s.name.startswith("ledgerflow.run")]
    assert (root.attributes or {})["ledgerflow.run_id"] == run_id
    assert (root.attributes or {})["ledgerflow.status"] == "completed"


class Raising:
    def __init__(self) -> None:
        self.calls = 0

    def committed(self, run_id: str, events: Any, *, first_seq: int, at: datetime) -> None:
        self.calls += 1
        raise RuntimeError("observer bug")


async def test_an_observer_that_raises_does_not_break_the_run(
    store: EventStore, traced: tuple[TracerProvider, InMemorySpanExporter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider, exporter = traced
    bad = Raising()
    run = await Orchestrator(store, observers=[bad, OtelObserver(provider)]).start(
        wf, Question(text="hi"))
    assert run.status == RunStatus.COMPLETED
    assert run.outputs["loud"] == Answer(answer="ECHO HI")
    assert bad.calls > 1
    assert "observer bug" in caplog.text or "failed on run" in caplog.text
    # The observer after the bad one was still told of everything.
    assert any(s.name == "ledgerflow.run otel-fixture" for s in exporter.get_finished_spans())


def test_the_otel_observer_itself_never_raises(
    traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    provider, _ = traced
    observer = OtelObserver(provider)
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        observer.committed("r1", [object()], first_seq=1,  # type: ignore[list-item]
                           at=datetime.now(UTC))
    assert "OpenTelemetry observer failed on run r1" in caplog.text


def test_open_spans_are_bounded_oldest_ended_first(
    traced: tuple[TracerProvider, InMemorySpanExporter], caplog: pytest.LogCaptureFixture
) -> None:
    provider, exporter = traced
    observer = OtelObserver(provider, max_open_spans=3)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with caplog.at_level(logging.WARNING, logger="ledgerflow"):
        for n in range(1, 6):
            observer.committed("never-ends", [ev.TaskDispatched(
                task_id=f"t{n}", attempt=1, input={}, idempotency_key="k", timeout_s=1.0)],
                first_seq=n, at=start + timedelta(seconds=n))
    assert len(observer._open) <= 3
    ended = exporter.get_finished_spans()
    assert observer.dropped == len(ended) == 3
    assert all((s.attributes or {})["ledgerflow.incomplete"] is True for s in ended)
    # Attempts go first, oldest first: the run's root stays, so its trace goes on.
    assert [s.name for s in ended] == ["ledgerflow.attempt t1#1", "ledgerflow.attempt t2#1",
                                       "ledgerflow.attempt t3#1"]
    assert [s.end_time for s in ended] == [ns(start + timedelta(seconds=n)) for n in (3, 4, 5)]
    assert "more than 3 open spans" in caplog.text
    observer.close(start + timedelta(seconds=9))
    assert len(exporter.get_finished_spans()) == 6
    assert not observer._open
    (root,) = [s for s in exporter.get_finished_spans() if s.name == "ledgerflow.run"]
    assert all(trace_id(s) == trace_id(root) for s in exporter.get_finished_spans())


def test_a_forgotten_run_ends_its_open_spans(
    traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    observer = OtelObserver(provider, max_runs=2)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for run_id in ("a", "b", "c"):
        observer.committed(run_id, [ev.TaskDispatched(
            task_id="t", attempt=1, input={}, idempotency_key="k", timeout_s=1.0)],
            first_seq=5, at=at)
    ended = exporter.get_finished_spans()
    assert [(s.attributes or {})["ledgerflow.run_id"] for s in ended] == ["a", "a"]
    assert {k[0] for k in observer._open} == {"b", "c"}


def test_the_core_install_does_not_import_opentelemetry() -> None:
    code = ("import sys, ledgerflow, ledgerflow.machines, ledgerflow.replay.cli; "
            "print(any(m.startswith('opentelemetry') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
