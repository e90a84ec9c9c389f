"""Shared pieces of the llm tests: a small domain, workflows whose agents call OpenAIChat,
and readers of the steps a run's log holds.

Not a conftest: ``from conftest import ...`` would clash with other packages'
conftest modules when the whole suite runs in one process.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

MODEL = "gpt-test-mini"


class Goal(BaseModel):
    city: str = "Lisbon"
    nights: int = 2


class QuoteIn(BaseModel):
    city: str
    nights: int


class Quote(BaseModel):
    """A priced stay: what the model is asked for."""

    city: str
    total: float = Field(gt=0)
    currency: str = "EUR"


GOOD = Quote(city="Lisbon", total=236.0)
