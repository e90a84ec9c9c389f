"""Validation at the agent boundary: inputs before dispatch, outputs before use.

Agent output is untrusted (an LLM wrote it), so :func:`validate_output` never
raises for it; it returns an :class:`OutputVerdict` the runtime records and
acts on. Everything here is pure, so a replay reaches the same verdict.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ledgerflow.contracts.errors import ConfidenceContractError, InputContractError
from ledgerflow.contracts.typecheck import is_number, type_name

__all__ = [
    "OutputVerdict",
    "confidence_field",
    "describe_errors",
    "validate_input",
    "validate_output",
]

_GOT_LIMIT = 60
_CONFIDENCE = "confidence"
_REASON_ERRORS = 5


@dataclass(frozen=True)
class OutputVerdict:
    """The decision on one agent output.

    ``ok`` means valid and not below ``min_confidence``; ``value`` is the
    validated output as a JSON-mode dict whenever it is valid (even with low
    confidence), else ``None``; ``reason`` is one sentence for the decision log.
    """

    ok: bool
    value: dict[str, Any] | None
    errors: tuple[str, ...]
    confidence: float | None
    low_confidence: bool
    reason: str


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _GOT_LIMIT else text[: _GOT_LIMIT - 3] + "..."


def describe_errors(exc: ValidationError) -> tuple[str, ...]:
    """One line per pydantic error, e.g. ``"total: Input should be a valid number (got 'x')"``."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = " ".join(str(error["msg"]).split())
        if error["type"] == "json_invalid":
            message = "Output is not JSON: " + message.removeprefix("Invalid JSON: ")
        elif error["type"] != "missing":
            message += f" (got {_got(error['input'])})"
        lines.append(f"{where}: {message}" if where else message)
    return tuple(lines)


@functools.lru_cache(maxsize=1024)  # asked once per validated output
def confidence_field(model: type[BaseModel]) -> bool:
    """Whether ``model`` declares a numeric ``confidence`` field.

    >>> class Out(BaseModel):
    ...     total: float
    ...     confidence: float
    >>> confidence_field(Out)
    True
    """
    info = model.model_fields.get(_CONFIDENCE)
    return info is not None and is_number(info.annotation)


def _fmt(number: float) -> str:
    # Two decimals reads well in a log, but never at the cost of hiding the real value.
    short = f"{number:.2f}"
    return short if float(short) == number else repr(number)


def _validate(model: type[BaseModel], raw: Any) -> BaseModel:
    if isinstance(raw, str | bytes | bytearray):
        return model.model_validate_json(raw)
    if isinstance(raw, BaseModel):
        # An instance may come from model_construct and hold anything: dump it and
        # re-validate as data, so no field escapes the contract.
        raw = raw.model_dump(mode="python", warnings=False)
    return model.model_validate(raw)


def validate_output(
    model: type[BaseModel],
    raw: Any,
    *,
    task_id: str,
    min_confidence: float | None = None,
) -> OutputVerdict:
    """Validate an agent's output against its contract; never raises for bad output.

    ``raw`` may be a dict, a model instance (re-validated), or a JSON string.
    Raises :class:`ConfidenceContractError` only for a caller mistake:
    ``min_confidence`` on a model with no ``confidence`` field.

    >>> class PricingOutput(BaseModel):
    ...     total: float
    ...     confidence: float
    >>> v = validate_output(PricingOutput, '{"total": "about 300", "confidence": 0.9}',
    ...                     task_id="price")
    >>> v.ok, v.errors  # doctest: +NORMALIZE_WHITESPACE
    (False, ("total: Input should be a valid number, unable to parse string as a number
    (got 'about 300')",))
    >>> validate_output(PricingOutput, {"total": 310, "confidence": 0.42}, task_id="price",
    ...                 min_confidence=0.7).reason
    "Output of task 'price' reported confidence 0.42, below the required 0.70."
    """
    has_confidence = confidence_field(model)
    if min_confidence is not None and not has_confidence:
        raise ConfidenceContractError(task_id, model.__name__, min_confidence)
    try:
        validated = _validate(model, raw)
        value = validated.model_dump(mode="json")
    except ValidationError as exc:
        errors = describe_errors(exc)
    except Exception as exc:
        errors = (f"{model.__name__} could not validate the output: {type(exc).__name__}: {exc}",)
    else:
        confidence: float | None = None
        if has_confidence:
            reported = getattr(validated, _CONFIDENCE)
            confidence = None if reported is None else float(reported)
        low = min_confidence is not None and (
            confidence is None or math.isnan(confidence) or not confidence >= min_confidence
        )
        if not low:
            reason = f"Output of task {task_id!r} is valid."
        elif confidence is None:
            assert min_confidence is not None
            reason = (
                f"Output of task {task_id!r} reported no confidence, "
                f"but {_fmt(min_confidence)} is required."
            )
        else:
            assert min_confidence is not None
            reason = (
                f"Output of task {task_id!r} reported confidence {_fmt(confidence)}, "
                f"below the required {_fmt(min_confidence)}."
            )
        return OutputVerdict(
            ok=not low,
            value=value,
            errors=(),
            confidence=confidence,
            low_confidence=low,
            reason=reason,
        )
    # The reason is prose for a person: a few errors, the count of the rest
    # (an output with 100,000 bad items must not make a 30 MB reason).
    summary = "; ".join(errors[:_REASON_ERRORS]).rstrip(".")
    if len(errors) > _REASON_ERRORS:
        summary += f"; and {len(errors) - _REASON_ERRORS:,} more error(s)"
    return OutputVerdict(
        ok=False,
        value=None,
        errors=errors,
        confidence=None,
        low_confidence=False,
        reason=f"Output of task {task_id!r} failed {model.__name__} validation: {summary}.",
    )


def validate_input(model: type[BaseModel], data: Mapping[str, Any], *, task_id: str) -> BaseModel:
    """Validate a task's resolved input; raises :class:`InputContractError`.

    >>> class BookingInput(BaseModel):
    ...     amount: float
    >>> validate_input(BookingInput, {"amount": 310}, task_id="book")
    BookingInput(amount=310.0)
    """
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise InputContractError(task_id, type_name(model), describe_errors(exc)) from exc
