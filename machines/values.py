"""Can this value be logged? The one check every value from outside passes.

A run's log is JSON (msgspec), and decisions are taken on exactly what the log
will read back. Some Python values have no faithful JSON form, and before
this check they escaped as raw errors that stranded the run (its batch never
committed, and every resume hit the same error):

- nesting deeper than :data:`MAX_DEPTH` (the encoder recurses: RecursionError;
  and anything near Python's recursion limit breaks copies and replays later);
- an ``int`` over 4,300 digits (Python refuses to print it: ValueError);
- a string with a lone surrogate such as ``"\\ud800"`` (no UTF-8 form);
- NaN and the infinities (JSON has none: the encoder writes ``null``, so a
  decision would see one value and the log another).

:func:`encode_loggable` encodes or raises :class:`UnloggableValueError`; the
runtime turns that into a recorded rejection for an agent or planner output
and into a refusal for a goal or a resolution.

Example::

    >>> encode_loggable({"total": 310})
    b'{"total":310}'
    >>> try:
    ...     encode_loggable({"total": float("nan")}, what="the goal")
    ... except UnloggableValueError as exc:
    ...     print(exc.problem)
    it holds NaN at $.total, which JSON cannot represent
"""

from __future__ import annotations

import math
import sys
from typing import Any

import msgspec
from pydantic import BaseModel

from ledgerflow.contracts.validation import children, non_finite_at, value_path
from ledgerflow.machines.errors import UnloggableValueError

__all__ = ["ENVELOPE_ROOM", "MAX_DEPTH", "as_logged", "describe_exception", "encode_loggable",
           "loggable_text"]

#: Deepest nesting of lists and dicts a logged value may have. Far above what
#: any real output needs (serde_json stops at 128) and far below Python's
#: recursion limit, so every later copy, validation and replay of the value
#: has room on the stack.
MAX_DEPTH = 200
#: Room left in one logged event for everything around the value it carries
#: (an agent's output, a plan, a step's result).
ENVELOPE_ROOM = 4096

_encode = msgspec.json.encode
_decode = msgspec.json.decode
#: The shortest JSON a value nested MAX_DEPTH deep can have: "[" and "]" per level.
_SHORTEST_TOO_DEEP = 2 * MAX_DEPTH


def encode_loggable(value: Any, *, what: str = "the value") -> bytes:
    """``value`` as the JSON the log will hold; :class:`UnloggableValueError` if it has none.

    ``value`` may be a pydantic model (dumped in JSON mode) or data.
    ``what`` names the value in the error ("the output of task 'price'").
    The common case costs one encode and two byte scans; the walks that find
    where a problem is run only when a scan says there may be one.
    """
    source = value
    if isinstance(value, BaseModel):
        value = _model_dump(value, what)
    try:
        encoded = _encode(value)
    except RecursionError:
        deep_at = _too_deep_in(value)
        raise UnloggableValueError(
            what, f"it is nested more than {MAX_DEPTH} levels deep"
            + (f" (at {deep_at})" if deep_at else ""), "flatten it") from None
    except UnicodeEncodeError as exc:
        raise UnloggableValueError(
            what, f"it holds a string with a lone surrogate ({exc.object[exc.start:exc.end]!r})",
            "send valid Unicode text") from None
    except ValueError as exc:
        raise _value_error(what, exc) from None
    except (TypeError, msgspec.EncodeError) as exc:
        raise UnloggableValueError(what, f"it is not JSON data ({exc})",
                                   "send dicts, lists, strings, numbers, booleans and null") \
            from None
    # NaN and the infinities encode as null (and a model's JSON dump makes them
    # None): only a log holding a null can hide one, so only then is the
    # original value (models, sets and dataclasses included) walked.
    if b"null" in encoded:
        where = non_finite_at(source)
        if where is not None:
            path, number = where
            raise UnloggableValueError(
                what, f"it holds {_name(number)} at {path}, which JSON cannot represent",
                "send a number or null instead")
    if len(encoded) >= _SHORTEST_TOO_DEEP and \
            encoded.count(b"[") + encoded.count(b"{") >= MAX_DEPTH:
        # Measured on the value as logged: a dataclass or model adds a level
        # the original's dicts and lists do not show.
        deep_at = _too_deep_at(encoded)
        if deep_at is not None:
            raise UnloggableValueError(
                what, f"it is nested more than {MAX_DEPTH} levels deep (at {deep_at})",
                "flatten it")
    return encoded


def _model_dump(model: BaseModel, what: str) -> Any:
    try:
        return model.model_dump(mode="json")
    except RecursionError:
        raise UnloggableValueError(
            what, f"it is nested more than {MAX_DEPTH} levels deep", "flatten it") from None
    except ValueError as exc:
        if _is_pydantic_circular_reference(exc):
            raise UnloggableValueError(
                what, f"it is nested more than {MAX_DEPTH} levels deep (or refers to itself)",
                "flatten it") from None
        raise _value_error(what, exc) from None
    except TypeError as exc:
        raise UnloggableValueError(
            what, f"it cannot be serialized ({type(exc).__name__}: {describe_exception(exc)})",
            "send plain JSON data") from None


def _is_pydantic_circular_reference(exc: ValueError) -> bool:
    """Whether ``model_dump`` gave up on nesting: pydantic reports nesting past its own
    depth limit as a circular reference, and has no error type for either."""
    return "Circular reference" in describe_exception(exc)


def _is_int_too_long_for_text(exc: ValueError) -> bool:
    """Whether Python refused to print an int over ``sys.get_int_max_str_digits()`` digits.

    Only the message tells: the error is a plain ValueError ("Exceeds the limit
    (4300 digits) for integer string conversion...").
    """
    return "digits" in describe_exception(exc)


def _value_error(what: str, exc: ValueError) -> UnloggableValueError:
    text = describe_exception(exc)
    if _is_int_too_long_for_text(exc):
        return UnloggableValueError(
            what, f"it holds an integer of more than {sys.get_int_max_str_digits():,} digits, "
            "too long to write as text", "send it as a string")
    return UnloggableValueError(
        what, f"it cannot be serialized (ValueError: {loggable_text(text, 300)})",
        "send plain JSON data")


def as_logged(value: Any, *, what: str = "the value") -> Any:
    """``value`` as replay will read it back from the log (tuples become lists, ...).

    >>> as_logged({"legs": ("LIS", "OPO")})
    {'legs': ['LIS', 'OPO']}
    """
    return _decode(encode_loggable(value, what=what))


def loggable_text(text: str, limit: int = 2000) -> str:
    """``text`` cut to ``limit`` characters, lone surrogates escaped: safe in any event.

    >>> loggable_text("bad \\ud800 byte")
    'bad \\\\ud800 byte'
    """
    text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def describe_exception(exc: BaseException) -> str:
    """``str(exc)``, or a stand-in when even that fails (an int too long to print)."""
    try:
        return str(exc)
    except Exception as inner:  # any failure here must not hide the first
        return f"<{type(exc).__name__} whose message cannot be shown: {type(inner).__name__}>"


def _name(number: float) -> str:
    return "NaN" if math.isnan(number) else "Infinity" if number > 0 else "-Infinity"


def _too_deep_in(value: Any) -> str | None:
    """Where data too deep to encode first nests past :data:`MAX_DEPTH` (walked, never recursed)."""
    stack: list[tuple[Any, int, Any]] = [(value, 1, None)]
    while stack:
        node, depth, link = stack.pop()
        if depth > MAX_DEPTH:
            return value_path(link)
        for key, child in children(node):
            if isinstance(child, dict | list):
                stack.append((child, depth + 1, (key, link)))
    return None


def _too_deep_at(encoded: bytes) -> str | None:
    """Where the logged JSON first nests deeper than :data:`MAX_DEPTH`, if it does."""
    try:
        value = _decode(encoded)
    except RecursionError:
        return "$"
    return _too_deep_in(value)
