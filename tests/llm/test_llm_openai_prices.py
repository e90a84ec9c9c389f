"""Prices: USD per million input and output tokens, per model; none given costs nothing."""

from __future__ import annotations

import pytest

from ledgerflow.llm import Price, PriceMissingError
from ledgerflow.llm.prices import FREE, price_of, price_table


def test_a_price_charges_input_and_output_tokens_per_million() -> None:
    price = Price(input_per_million=0.4, output_per_million=1.6)
    assert price.cost(input_tokens=1_000_000, output_tokens=0) == pytest.approx(0.4)
    assert price.cost(input_tokens=1_000, output_tokens=500) == pytest.approx(0.0012)


def test_prices_are_given_as_tuples_or_price_objects() -> None:
    table = price_table({"a": (1.0, 2.0), "b": Price(3.0, 4.0)})
    assert table == {"a": Price(1.0, 2.0), "b": Price(3.0, 4.0)}


def test_no_prices_means_free_calls() -> None:
    assert price_of(price_table(None), "any-model") is FREE
    assert FREE.cost(input_tokens=10**9, output_tokens=10**9) == 0.0


def test_prices_without_the_called_model_are_refused_not_treated_as_free() -> None:
    with pytest.raises(PriceMissingError, match=r"No price for model 'gpt-4\.1' .*gpt-4\.1-mini"):
        price_of(price_table({"gpt-4.1-mini": (0.4, 1.6)}), "gpt-4.1")


@pytest.mark.parametrize("spec", [(1.0,), (1.0, -2.0), (float("nan"), 1.0), "0.4/1.6"],
                         ids=["one-number", "negative", "nan", "string"])
def test_a_malformed_price_is_refused_naming_the_model(spec: object) -> None:
    with pytest.raises(ValueError, match=r"Price\.|price of model 'm'"):
        price_table({"m": spec})  # type: ignore[dict-item]
