"""Output validation: hallucinated output is caught, never passed on, never raised."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from contracts_travel import BookingInput, BookingOutput, PricingOutput
from pydantic import BaseModel, field_validator

from ledgerflow.contracts import (
    ConfidenceContractError,
    InputContractError,
    OutputVerdict,
    confidence_field,
    validate_input,
    validate_output,
)

GOOD = {"total": 310, "currency": "EUR", "confidence": 0.9}


def test_valid_output_is_ok_with_its_json_value() -> None:
    verdict = validate_output(PricingOutput, GOOD, task_id="price", min_confidence=0.7)
    assert verdict == OutputVerdict(
        ok=True,
        value={"total": 310.0, "currency": "EUR", "confidence": 0.9, "items": []},
        errors=(),
        confidence=0.9,
        low_confidence=False,
        reason="Output of task 'price' is valid.",
    )


def test_json_text_output_is_parsed_and_validated() -> None:
    verdict = validate_output(PricingOutput, json.dumps(GOOD), task_id="price")
    assert verdict.ok
    assert verdict.value is not None
    assert verdict.value["total"] == 310.0


@pytest.mark.parametrize(
    ("raw", "errors"),
    [
        (
            {**GOOD, "total": "about 300"},
            (
                "total: Input should be a valid number, unable to parse string as a number "
                "(got 'about 300')",
            ),
        ),
        ({"total": 310, "confidence": 0.9}, ("currency: Field required",)),
        ({**GOOD, "note": "trust me"}, ("note: Extra inputs are not permitted (got 'trust me')",)),
        (
            'Sure! Here is the price: {"total": 310}',
            ("Output is not JSON: expected value at line 1 column 1",),
        ),
        ("about 300 euros", ("Output is not JSON: expected value at line 1 column 1",)),
        (None, ("Input should be a valid dictionary or instance of PricingOutput (got None)",)),
    ],
    ids=["wrong-type", "missing-field", "extra-field", "extra-prose", "not-json", "none"],
)
def test_hallucinated_output_is_invalid_with_field_errors(raw: Any, errors: tuple[str]) -> None:
    verdict = validate_output(PricingOutput, raw, task_id="price")
    assert not verdict.ok
    assert verdict.value is None
    assert verdict.errors == errors
    assert verdict.confidence is None
    assert not verdict.low_confidence
    assert verdict.reason == (
        f"Output of task 'price' failed PricingOutput validation: {'; '.join(errors)}."
    )


def test_several_errors_are_listed_in_field_order() -> None:
    verdict = validate_output(PricingOutput, {"total": "x"}, task_id="price")
    assert [e.split(":")[0] for e in verdict.errors] == ["total", "currency", "confidence"]


def test_low_confidence_output_is_flagged_not_ok() -> None:
    raw = {**GOOD, "confidence": 0.42}
    verdict = validate_output(PricingOutput, raw, task_id="price", min_confidence=0.7)
    assert not verdict.ok
    assert verdict.low_confidence
    assert verdict.confidence == 0.42
    assert verdict.value is not None  # kept for the decision log and an escalation
    assert verdict.errors == ()
    assert verdict.reason == (
        "Output of task 'price' reported confidence 0.42, below the required 0.70."
    )


def test_confidence_at_the_threshold_is_ok() -> None:
    raw = {**GOOD, "confidence": 0.7}
    assert validate_output(PricingOutput, raw, task_id="price", min_confidence=0.7).ok


def test_nan_confidence_is_low() -> None:
    raw = {**GOOD, "confidence": math.nan}
    verdict = validate_output(PricingOutput, raw, task_id="price", min_confidence=0.1)
    assert verdict.low_confidence


def test_reason_never_rounds_a_confidence_onto_the_threshold() -> None:
    raw = {**GOOD, "confidence": 0.699}
    verdict = validate_output(PricingOutput, raw, task_id="price", min_confidence=0.7)
    assert "confidence 0.699, below the required 0.70" in verdict.reason


def test_missing_confidence_when_one_is_required_is_low() -> None:
    class Maybe(BaseModel):
        confidence: float | None = None

    verdict = validate_output(Maybe, {}, task_id="t", min_confidence=0.5)
    assert (verdict.ok, verdict.low_confidence, verdict.confidence) == (False, True, None)
    assert "reported no confidence" in verdict.reason


def test_min_confidence_on_a_model_without_confidence_is_a_caller_error() -> None:
    with pytest.raises(ConfidenceContractError):
        validate_output(BookingOutput, {"confirmation": "X"}, task_id="book", min_confidence=0.5)


def test_pydantic_instance_output_is_revalidated() -> None:
    # model_construct skips validation: exactly how a bad output could sneak in typed.
    forged = PricingOutput.model_construct(total="about 300", currency="EUR", confidence=0.9)  # type: ignore[arg-type]
    verdict = validate_output(PricingOutput, forged, task_id="price")
    assert not verdict.ok
    assert verdict.errors[0].startswith("total: Input should be a valid number")
    honest = PricingOutput(total=310, currency="EUR", confidence=0.9)
    assert validate_output(PricingOutput, honest, task_id="price").ok


def test_crashing_contract_validator_is_an_invalid_output_not_an_exception() -> None:
    class Touchy(BaseModel):
        x: int

        @field_validator("x")
        @classmethod
        def explode(cls, value: int) -> int:
            raise KeyError(value)

    verdict = validate_output(Touchy, {"x": 1}, task_id="t")
    assert not verdict.ok
    assert "KeyError" in verdict.errors[0]


def test_confidence_field_requires_a_numeric_confidence() -> None:
    class Text(BaseModel):
        confidence: str

    assert confidence_field(PricingOutput)
    assert not confidence_field(BookingOutput)
    assert not confidence_field(Text)


def test_validate_input_returns_the_model() -> None:
    value = validate_input(BookingInput, {"amount": 310, "destination": "Lisbon"}, task_id="book")
    assert value == BookingInput(amount=310.0, destination="Lisbon")


def test_validate_input_raises_input_contract_error() -> None:
    with pytest.raises(InputContractError) as caught:
        validate_input(BookingInput, {"amount": "lots"}, task_id="book")
    error = caught.value
    assert (error.task_id, error.model) == ("book", "BookingInput")
    assert error.errors[1] == "destination: Field required"
    assert str(error).startswith("Input of task 'book' failed BookingInput validation: amount:")
