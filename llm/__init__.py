"""Adapters that make real agents: OpenAIChat (the ``openai`` client) and pydantic-ai.

Each adapter needs its optional extra (``ledgerflow[openai]``,
``ledgerflow[pydantic-ai]``); importing this package needs neither: the
names below are imported on first use, and a missing extra is named then.

Example::

    from openai import AsyncOpenAI
    from ledgerflow.llm import OpenAIChat, Price

    chat = OpenAIChat(AsyncOpenAI(), "gpt-4.1-mini", prices={"gpt-4.1-mini": Price(0.4, 1.6)})
    quote = await chat.parse(ctx, "Two nights in Lisbon, priced.", output=Quote)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if not __name__.startswith("ledgerflow."):
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")

if TYPE_CHECKING:
    from ledgerflow.llm.model_limits import ModelLimitConflictError
    from ledgerflow.llm.openai_answers import ModelOutputError
    from ledgerflow.llm.openai_chat import OpenAIChat
    from ledgerflow.llm.openai_waits import (
        ModelRateLimitedError,
        ModelWaitPastDeadlineError,
        WaitPolicy,
    )
    from ledgerflow.llm.prices import Price, PriceMissingError
    from ledgerflow.llm.pydantic_agents import LedgerflowDurability, run_agent

__all__ = [
    "LedgerflowDurability",
    "ModelLimitConflictError",
    "ModelOutputError",
    "ModelRateLimitedError",
    "ModelWaitPastDeadlineError",
    "OpenAIChat",
    "Price",
    "PriceMissingError",
    "WaitPolicy",
    "run_agent",
]

#: Public name -> the module defining it (imported on first use).
_LAZY: dict[str, str] = {
    "LedgerflowDurability": "ledgerflow.llm.pydantic_agents",
    "ModelLimitConflictError": "ledgerflow.llm.model_limits",
    "ModelOutputError": "ledgerflow.llm.openai_answers",
    "ModelRateLimitedError": "ledgerflow.llm.openai_waits",
    "ModelWaitPastDeadlineError": "ledgerflow.llm.openai_waits",
    "OpenAIChat": "ledgerflow.llm.openai_chat",
    "Price": "ledgerflow.llm.prices",
    "PriceMissingError": "ledgerflow.llm.prices",
    "WaitPolicy": "ledgerflow.llm.openai_waits",
    "run_agent": "ledgerflow.llm.pydantic_agents",
}

#: The extra that installs what a module needs.
_EXTRA_OF: dict[str, str] = {
    "ledgerflow.llm.openai_answers": "openai",
    "ledgerflow.llm.openai_chat": "openai",
    "ledgerflow.llm.pydantic_agents": "pydantic-ai",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as missing:
        # A third-party package is missing (not a module of ledgerflow's own).
        if missing.name is None or missing.name.startswith("ledgerflow"):
            raise
        extra = _EXTRA_OF.get(module_name, "openai")
        raise ImportError(
            f"ledgerflow.llm.{name} needs the '{missing.name}' package, which is not "
            f"installed: install ledgerflow[{extra}] (pip install 'ledgerflow[{extra}]')."
        ) from missing
    value = getattr(module, name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
