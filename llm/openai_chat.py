"""OpenAIChat: structured answers from any OpenAI-compatible server, one journaled step per call.

Built on the official ``openai`` async client, so it speaks to OpenAI, Azure
OpenAI, vLLM, Ollama, LM Studio, OpenRouter — anything that serves
``POST /v1/chat/completions``.

Each model call is one step named ``openai.chat`` whose request is
``{"model", "messages", "response_format", "params"}`` and whose result is
the raw chat completion (``response.model_dump(mode="json")``), with its
tokens, cost and waits in the step's usage and ``detail``. The answer is
parsed from that recorded JSON *after* the step, so a resumed attempt or an
offline replay re-parses the recorded answers instead of calling the model.

Example::

    from openai import AsyncOpenAI
    from ledgerflow.llm import OpenAIChat

    chat = OpenAIChat(AsyncOpenAI(), "gpt-4.1-mini", prices={"gpt-4.1-mini": (0.4, 1.6)},
                      max_concurrent=8)

    @wf.agent(input=PricingInput, output=PricingOutput)
    async def pricing(inp: PricingInput, ctx: AgentContext) -> PricingOutput:
        return await chat.parse(ctx, [{"role": "user", "content": f"Price {inp}"}],
                                output=PricingOutput, temperature=0)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast

import openai
from pydantic import BaseModel

from ledgerflow.llm.model_limits import declare_limit, declared_limit, model_slot
from ledgerflow.llm.openai_answers import (
    InvalidAnswer,
    ModelOutputError,
    answer_of,
    feedback_messages,
    response_format_for,
)
from ledgerflow.llm.openai_waits import (
    ModelRateLimitedError,
    ModelWaitPastDeadlineError,
    WaitPolicy,
    planned_wait,
)
from ledgerflow.llm.prices import Price, PriceSpec, price_of, price_table
from ledgerflow.machines import AgentContext, Metered

__all__ = ["OpenAIChat"]

M = TypeVar("M", bound=BaseModel)

#: Arguments parse() itself sends; a caller's params may not replace them.
_OWN_ARGUMENTS = frozenset({"model", "messages", "response_format"})
#: Arguments that would make the answer something other than one chat completion.
_UNSUPPORTED_ARGUMENTS = frozenset({"stream", "stream_options"})


def _as_messages(messages: str | Sequence[Mapping[str, object]]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    listed = [dict(message) for message in messages]
    if not listed:
        raise ValueError("parse() needs at least one message (got none).")
    return listed


def _check_params(params: Mapping[str, Any]) -> None:
    clash = sorted(_OWN_ARGUMENTS & params.keys())
    if clash:
        raise TypeError(f"parse() sets {', '.join(clash)} itself; pass the model to "
                        "OpenAIChat(...), the messages as the second argument and the "
                        "schema as output=.")
    unsupported = sorted(_UNSUPPORTED_ARGUMENTS & params.keys())
    if unsupported:
        raise TypeError(f"parse() does not support {', '.join(unsupported)}: a step records "
                        "one whole chat completion.")


class OpenAIChat:
    """One model at one OpenAI-compatible endpoint, answering in pydantic models.

    ``prices`` maps model names to USD per million input and output tokens
    (a :class:`~ledgerflow.llm.Price` or an ``(input, output)`` tuple); with
    none, calls cost 0 and their tokens are still counted. ``max_concurrent``
    bounds the requests to this model at this ``base_url`` in flight at once
    in the whole process (every run, every instance). ``parse_retries`` more
    calls are made when an answer is not valid, each with the validation
    error fed back. ``waits`` bounds how a 429/503 is waited out (the
    client's own retries are turned off, so every wait is recorded).

    Example::

        chat = OpenAIChat(AsyncOpenAI(base_url="http://localhost:11434/v1", api_key="ollama"),
                          "llama3.2", max_concurrent=2)
        quote = await chat.parse(ctx, "Price two nights in Lisbon.", output=Quote)
    """

    #: The step name each model call is journaled under (stable: logs hold it).
    STEP_NAME: ClassVar[str] = "openai.chat"

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        prices: Mapping[str, PriceSpec] | None = None,
        max_concurrent: int | None = None,
        parse_retries: int = 1,
        waits: WaitPolicy | None = None,
    ) -> None:
        if not isinstance(client, openai.AsyncOpenAI):
            raise TypeError(f"OpenAIChat needs an openai.AsyncOpenAI client (or AsyncAzureOpenAI)"
                            f"; got {type(client).__name__}.")
        if not model:
            raise ValueError("OpenAIChat needs a model name (got an empty one).")
        if isinstance(parse_retries, bool) or not isinstance(parse_retries, int) \
                or parse_retries < 0:
            raise ValueError(f"parse_retries must be a whole number >= 0 (got {parse_retries!r}).")
        self.model = model
        # Every wait is ours (bounded by the run's deadline and recorded), never the client's.
        self.client = client.with_options(max_retries=0)
        self.base_url = str(client.base_url).rstrip("/")
        self.price: Price = price_of(price_table(prices), model)
        self.parse_retries = parse_retries
        self.waits = waits if waits is not None else WaitPolicy()
        if max_concurrent is not None:
            declare_limit(self.base_url, model, max_concurrent, owner=self)

    @property
    def max_concurrent(self) -> int | None:
        """The limit in force for this model and endpoint in this process (None: unbounded)."""
        return declared_limit(self.base_url, self.model)

    def __repr__(self) -> str:
        return f"OpenAIChat(model={self.model!r}, base_url={self.base_url!r})"

    async def parse(
        self,
        ctx: AgentContext,
        messages: str | Sequence[Mapping[str, object]],
        *,
        output: type[M],
        **params: Any,
    ) -> M:
        """Ask the model for an ``output``, one journaled step per call.

        ``messages`` are chat messages (``{"role": ..., "content": ...}``) or one
        string (a user message); ``params`` go to ``chat.completions.create``
        as they are (``temperature=0``, ``max_tokens=...``, ``seed=...``) and
        are recorded. An answer that is not valid JSON for ``output`` is asked
        again up to ``parse_retries`` times, with the problem fed back; then
        :class:`~ledgerflow.llm.ModelOutputError` is raised and the task's
        retry policy decides. A spent budget or a passed deadline refuses the
        next call with ``BudgetExhaustedError`` before it is made.

        Example::

            quote = await chat.parse(ctx, [{"role": "system", "content": "Answer in EUR."},
                                           {"role": "user", "content": "Two nights in Lisbon"}],
                                     output=Quote, temperature=0)
        """
        _check_params(params)
        conversation = _as_messages(messages)
        response_format = response_format_for(output)
        call = functools.partial(self._complete, ctx)
        problem = ""
        calls = self.parse_retries + 1
        for _ in range(calls):
            raw = await ctx.step(self.STEP_NAME, call, model=self.model, messages=conversation,
                                 response_format=response_format, params=params)
            if not isinstance(raw, Mapping):
                raise TypeError(f"Step '{self.STEP_NAME}' holds {type(raw).__name__}, not a "
                                "chat completion; was the log written by another adapter?")
            answer = answer_of(raw, output)
            if not isinstance(answer, InvalidAnswer):
                return answer
            problem = answer.problem
            conversation = [*conversation, *feedback_messages(answer, output)]
        raise ModelOutputError(model=self.model, output=output.__name__, problem=problem,
                               calls=calls)

    async def _complete(
        self,
        ctx: AgentContext,
        *,
        model: str,
        messages: list[dict[str, Any]],
        response_format: dict[str, Any],
        params: dict[str, Any],
    ) -> Metered:
        """One model call (with its waits): the step's function. Returns the raw response."""
        waits: list[dict[str, Any]] = []
        while True:
            try:
                limit = declared_limit(self.base_url, model)
                # The limit holds in this process and, run by a worker, across the pool.
                pool_slot: contextlib.AbstractAsyncContextManager[None] = (
                    contextlib.nullcontext() if limit is None
                    else ctx.pool_slot(f"model:{self.base_url}:{model}", limit))
                async with model_slot(self.base_url, model), pool_slot:
                    response = await self.client.chat.completions.create(
                        model=model, messages=cast(Any, messages),
                        response_format=cast(Any, response_format), **params)
                break
            except openai.APIStatusError as error:
                try:
                    wait = planned_wait(model=model, status=error.status_code,
                                        headers=error.response.headers, waits=waits,
                                        policy=self.waits, time_left_s=ctx.time_left(),
                                        now=time.time())
                except (ModelRateLimitedError, ModelWaitPastDeadlineError) as refused:
                    raise refused from error
                if wait is None:
                    raise
                waits.append(wait)
            # Outside the slot: a waiting call must not keep others from the model.
            await asyncio.sleep(wait["retry_after_s"])
        usage = response.usage
        input_tokens = usage.prompt_tokens if usage else 0
        output_tokens = usage.completion_tokens if usage else 0
        detail: dict[str, Any] = {"kind": "llm", "model": model, "input_tokens": input_tokens,
                                  "output_tokens": output_tokens, "waits": waits}
        return Metered(
            response.model_dump(mode="json"),
            tokens=(usage.total_tokens if usage else 0) or input_tokens + output_tokens,
            cost=self.price.cost(input_tokens=input_tokens, output_tokens=output_tokens),
            detail=detail,
        )
