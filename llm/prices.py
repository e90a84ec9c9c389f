"""What a model call costs: USD per million input and output tokens, per model.

Prices are the caller's to give (they change, and differ by provider and
contract); with none given, calls cost 0 and their tokens are still counted.

Example::

    >>> prices = price_table({"gpt-4.1-mini": (0.4, 1.6)})
    >>> prices["gpt-4.1-mini"].cost(input_tokens=1_000_000, output_tokens=500_000)
    1.2
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from ledgerflow.errors import LedgerflowError

__all__ = ["FREE", "Price", "PriceMissingError", "PriceSpec", "price_of", "price_table"]

#: USD per million tokens in the order the providers' price pages use.
TOKENS_PER_PRICE_UNIT = 1_000_000


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input (prompt) tokens and per million output (completion) tokens.

    Example::

        Price(input_per_million=0.4, output_per_million=1.6)
    """

    input_per_million: float
    output_per_million: float

    def __post_init__(self) -> None:
        for name in ("input_per_million", "output_per_million"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and not isinstance(value, bool)
                    and math.isfinite(value) and value >= 0):
                raise ValueError(f"Price.{name} must be a finite number of USD >= 0 "
                                 f"(got {value!r}).")

    def cost(self, *, input_tokens: int, output_tokens: int) -> float:
        """The USD cost of one call that used these tokens."""
        return (input_tokens * self.input_per_million
                + output_tokens * self.output_per_million) / TOKENS_PER_PRICE_UNIT


#: The price of a model no prices were given for: its tokens are counted, it costs nothing.
FREE = Price(0.0, 0.0)

#: A price as the caller writes it: a Price, or an (input, output) tuple of USD per 1M tokens.
PriceSpec = Price | tuple[float, float]


class PriceMissingError(LedgerflowError, ValueError):
    """Prices were given, but not for the model being called (a typo would make it free)."""

    def __init__(self, model: str, priced: list[str]) -> None:
        self.model = model
        self.priced = priced
        super().__init__(f"No price for model '{model}' (prices are given for: "
                         f"{', '.join(priced) or 'none'}); add prices['{model}'] = "
                         "(USD per 1M input tokens, USD per 1M output tokens), or pass "
                         "prices=None to count tokens at no cost.")


def _as_price(model: str, spec: object) -> Price:
    if isinstance(spec, Price):
        return spec
    if isinstance(spec, tuple) and len(spec) == 2:
        return Price(*spec)
    raise ValueError(f"The price of model '{model}' must be a Price or a tuple "
                     f"(USD per 1M input tokens, USD per 1M output tokens); got {spec!r}.")


def price_table(prices: Mapping[str, PriceSpec] | None) -> dict[str, Price]:
    """Prices normalised to :class:`Price` by model name (``{}`` for ``None``).

    Example::

        >>> price_table({"m": (1, 2)})["m"]
        Price(input_per_million=1, output_per_million=2)
    """
    if prices is None:
        return {}
    return {model: _as_price(model, spec) for model, spec in prices.items()}


def price_of(prices: Mapping[str, Price] | None, model: str) -> Price:
    """The price of ``model``: :data:`FREE` when no prices were given at all.

    Raises :class:`PriceMissingError` when prices were given but not for this
    model: a silently free model would let a budget be overspent.
    """
    if not prices:
        return FREE
    if model not in prices:
        raise PriceMissingError(model, sorted(prices))
    return prices[model]
