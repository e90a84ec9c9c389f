"""Strict JSON for values typed on the command line (``--goal``, ``--output``).

Python's ``json`` accepts what a log must never hold and fails in ways a user
cannot read: ``NaN``/``Infinity`` (and ``1e400``, which becomes infinity) are
not JSON and would be decided on one way and logged another; a document
nested 10^5 deep raises ``RecursionError``; an integer over 4,300 digits a
bare ``ValueError``; an escaped lone surrogate (``"\\ud800"``) parses but
cannot be encoded as UTF-8 when it is logged; a key given twice
(``{"n": 1, "n": 2}``) would silently keep the last. Each of these is refused here,
before anything is opened, with one sentence naming where in the document it
is.

Example::

    >>> parse_json_text('{"destination": "Lisbon", "passengers": 2}', "--goal")
    {'destination': 'Lisbon', 'passengers': 2}
    >>> parse_json_text('{"total": NaN}', "--output")
    Traceback (most recent call last):
    ...
    ledgerflow.replay.errors.JsonArgumentError: ...
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ledgerflow.machines.values import MAX_DEPTH
from ledgerflow.replay.errors import JsonArgumentError

__all__ = ["json_depth", "parse_json_arg", "parse_json_text"]

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text``, without parsing it.

    Counted without recursion (strings are skipped first), so a document
    nested 10^5 deep is measured, not crashed on.

    Example::

        >>> json_depth('{"a": [1, [2, "]]"]]}')
        3
    """
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _not_json_constant(name: str) -> Any:
    raise _ConstantError(name)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of two equal keys silently: {"n":1,"n":2} would be
    # logged as {"n":2} while the user may have meant either.
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKeyError(key)
        doc[key] = value
    return doc


class _ConstantError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 parses as infinity: as unloggable as the Infinity literal.
        raise _ConstantError(text)
    return value


def _first_lone_surrogate(value: Any) -> str | None:
    """The path of the first string (key or value) that is not valid Unicode, if any."""
    stack: list[tuple[str, Any]] = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not _encodable(item):
                return path
        elif isinstance(item, dict):
            for key, child in reversed(list(item.items())):
                if not _encodable(key):
                    return f"{path} (a key)"
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in reversed(list(enumerate(item))))
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_json_text(text: str, what: str) -> Any:
    """Parse ``text`` as strict JSON for the option ``what``; raise :class:`JsonArgumentError`.

    Example::

        value = parse_json_text(sys.argv[2], "--goal")
    """
    depth = json_depth(text)
    # The runtime's own limit for a logged value, so the CLI refuses exactly
    # what the log cannot hold.
    if depth > MAX_DEPTH:
        raise JsonArgumentError(
            what, f"is nested {depth} levels deep, more than the {MAX_DEPTH} a log can hold")
    try:
        value = json.loads(text, parse_constant=_not_json_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
    except _DuplicateKeyError as exc:
        raise JsonArgumentError(
            what, f"gives the key {json.dumps(exc.key)} twice in one object (JSON would keep "
            "only the last silently); give each key once") from None
    except _ConstantError as exc:
        raise JsonArgumentError(
            what, f"holds {exc.name}, which is not a JSON number (only finite numbers can be "
            "logged and replayed)") from None
    except json.JSONDecodeError as exc:
        raise JsonArgumentError(
            what, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except ValueError as exc:
        # int() refuses more than 4,300 digits (CVE-2020-10735); say so plainly.
        raise JsonArgumentError(
            what, f"holds an integer too long to read ({_first_clause(exc)})") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise JsonArgumentError(what, "is nested too deep to read") from None
    where = _first_lone_surrogate(value)
    if where is not None:
        raise JsonArgumentError(
            what, f"holds a lone surrogate at {where}, which is not valid Unicode and cannot be "
            "logged as UTF-8")
    return value


def _first_clause(exc: ValueError) -> str:
    return str(exc).split(";")[0]


def parse_json_arg(value: str, what: str) -> Any:
    """Parse a command-line JSON value, or ``@file`` holding one.

    Example::

        goal = parse_json_arg("@goal.json", "--goal")
    """
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise JsonArgumentError(what, f"cannot be read from {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise JsonArgumentError(what, f"cannot be read from {path}: it is not UTF-8 text") \
                from None
    return parse_json_text(text, what)
