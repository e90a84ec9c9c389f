"""Adapters that make real agents: OpenAIChat (the ``openai`` client) and pydantic-ai.

Each adapter needs its optional extra (``ledgerflow[openai]``,
``ledgerflow[pydantic-ai]``); importing this package needs neither.
"""

if not __name__.startswith("ledgerflow."):
    raise ImportError(f"Import ledgerflow.{__name__}, not {__name__}: the folder "
                      f"{__name__}/ installs as ledgerflow.{__name__}.")
