"""What an agent promises: the model it accepts and the model it returns."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

__all__ = ["AgentContract"]


@dataclass(frozen=True)
class AgentContract:
    """An agent's name and its input and output models.

    >>> from pydantic import BaseModel
    >>> class In(BaseModel):
    ...     destination: str
    >>> class Out(BaseModel):
    ...     total: float
    >>> AgentContract(name="pricing", input=In, output=Out).output.__name__
    'Out'
    """

    name: str
    input: type[BaseModel]
    output: type[BaseModel]
