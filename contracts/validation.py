"""Validation at the agent boundary: inputs before dispatch, outputs before use.

Agent output is untrusted (an LLM wrote it), so :func:`validate_output` never
raises for it; it returns an :class:`OutputVerdict` the runtime records and
acts on. Everything here is pure, so a replay reaches the same verdict.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from ledgerflow.contracts.errors import ConfidenceContractError, InputContractError
from ledgerflow.contracts.hidden import HiddenSecrets, SecretsGoneError
from ledgerflow.contracts.secrets import contract_has_secrets
from ledgerflow.contracts.typecheck import is_number, type_name

__all__ = [
    "OutputVerdict",
    "confidence_field",
    "describe_errors",
    "non_finite_at",
    "validate_input",
    "validate_output",
]

_GOT_LIMIT = 60
_CONFIDENCE = "confidence"
_REASON_ERRORS = 5
_encode = msgspec.json.encode
_NON_FINITE = "cannot be recorded"


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


#: A path as a linked list, (key, parent) or None at the root: a child costs one tuple.
_Link = tuple[Any, Any] | None


def value_path(link: _Link) -> str:
    """The JSONPath-like text of a linked path, long ones elided in the middle."""
    parts: list[Any] = []
    while link is not None:
        key, link = link
        parts.append(key)
    parts.reverse()
    shown = parts if len(parts) <= 8 else [*parts[:4], "...", *parts[-3:]]
    return "$" + "".join(
        "..." if p == "..." else f"[{p}]" if isinstance(p, int) else f".{p}" for p in shown)


def children(value: Any) -> list[tuple[Any, Any]]:
    """The parts of a container a log could carry: dicts, sequences, sets, dataclasses, models."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list | tuple | set | frozenset):
        return list(enumerate(value))
    if isinstance(value, BaseModel):
        parts = dict(value.__dict__)
        parts.update(value.__pydantic_extra__ or {})
        return list(parts.items())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [(f.name, getattr(value, f.name, None)) for f in dataclasses.fields(value)]
    return []


def non_finite_at(value: Any) -> tuple[str, float] | None:
    """Where the first NaN or infinity in ``value`` is, if any (iterative: no recursion limit).

    Models, dataclasses and sets are looked into: a JSON dump turns a NaN
    there into ``null``, so only the value itself still shows it.

    >>> non_finite_at({"a": [1.0, {float("nan")}]})
    ('$.a[1][0]', nan)
    """
    stack: list[tuple[Any, _Link]] = [(value, None)]
    seen: set[int] = set()
    while stack:
        node, link = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                return value_path(link), node
            continue
        if isinstance(node, str | int | bytes | bool) or node is None:
            continue
        if id(node) in seen:  # a value referring to itself is refused elsewhere
            continue
        seen.add(id(node))
        for key, child in reversed(children(node)):
            stack.append((child, (key, link)))
    return None


def _may_hide_non_finite(value: Any) -> bool:
    try:
        return b"null" in _encode(value)
    except Exception:  # not encodable at all: let the walk look
        return True


def _non_finite_error(validated: BaseModel) -> tuple[str | None, tuple[str, ...]]:
    """The path of the first NaN or infinity in ``validated`` (None if none) and its error."""
    found = non_finite_at(validated)
    if found is None:
        return None, ()
    path, number = found
    name = "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"
    where = path.removeprefix("$").removeprefix(".") or "output"
    return path, (f"{where}: {name} {_NON_FINITE} (JSON has no such number); "
                  "send a finite number or null",)


def _is_nan_confidence(non_finite_path: str | None) -> bool:
    """Whether the NaN or infinity the output holds is its top-level confidence field."""
    return non_finite_path == f"$.{_CONFIDENCE}"


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _GOT_LIMIT else text[: _GOT_LIMIT - 3] + "..."


def describe_errors(exc: ValidationError, *, show_input: bool = True) -> tuple[str, ...]:
    """One line per pydantic error, e.g. ``"total: Input should be a valid number (got 'x')"``.

    ``show_input=False`` leaves out what was got (an output holding secrets).
    """
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"])
        message = " ".join(str(error["msg"]).split())
        if error["type"] == "json_invalid":
            message = "Output is not JSON: " + message.removeprefix("Invalid JSON: ")
        elif error["type"] != "missing" and show_input:
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


def _validate_hidden(model: type[BaseModel], hidden: HiddenSecrets) -> BaseModel:
    if hidden.missing:
        raise SecretsGoneError(hidden.missing)
    return _validate(model, hidden.revealed)


def validate_output(
    model: type[BaseModel],
    raw: Any,
    *,
    task_id: str,
    min_confidence: float | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> OutputVerdict:
    """Validate an agent's output against its contract; never raises for bad output.

    ``raw`` may be a dict, a model instance (re-validated), or a JSON string.
    In a contract with secret fields (:mod:`ledgerflow.contracts.secrets`)
    ``raw`` holds references where the secrets are: they are validated as
    ``secrets`` (reference → value) reveals them, the verdict's value holds the
    same references again, and no error line quotes a value.
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
    non_finite: str | None = None  # where a NaN or infinity is, if the output holds one
    hidden = HiddenSecrets.of(model, raw, secrets) if contract_has_secrets(model) else None
    try:
        validated = _validate(model, raw) if hidden is None else _validate_hidden(model, hidden)
        # A field parsed to NaN or Infinity ("nan", 1e400) would be dumped as null:
        # the decision would see one value and the log another.
        value = validated.model_dump(mode="json") if hidden is None else hidden.masked(validated)
        # Only a dump holding a null can hide one: the walk is for those alone.
        if _may_hide_non_finite(value):
            non_finite, errors = _non_finite_error(validated)
        else:
            errors = ()
    except ValidationError as exc:
        errors = describe_errors(exc, show_input=hidden is None)
    except SecretsGoneError as exc:
        errors = (str(exc),)
    except Exception as exc:
        errors = (f"{model.__name__} could not validate the output: {type(exc).__name__}: {exc}",)
    if hidden is not None:
        errors = tuple(hidden.scrub(line) for line in errors)
    if not errors:
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
    # A NaN confidence can never meet a threshold: still low confidence, but with
    # no value (the log could only hold it as null).
    nan_confidence = min_confidence is not None and has_confidence and \
        _is_nan_confidence(non_finite)
    return OutputVerdict(
        ok=False,
        value=None,
        errors=errors,
        confidence=None,
        low_confidence=nan_confidence,
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
