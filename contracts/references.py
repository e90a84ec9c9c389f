"""References: how a task's input names the goal or an upstream output.

``"$goal.destination"`` reads the goal, ``"$price.total"`` reads the output of
task ``price``, ``"$price.items.0.amount"`` indexes a list with a digit
segment. A string starting with ``"$$"`` is a literal with one ``$`` removed;
any other value is a literal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ledgerflow.contracts.errors import ReferenceSyntaxError

__all__ = ["Reference", "iter_strings", "parse_reference", "references_in", "unescape"]

_SOURCE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: where the value comes from and the path into it.

    >>> parse_reference("$price.items.0.amount")
    Reference(source='price', path=('items', '0', 'amount'))
    """

    source: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "$" + ".".join((self.source, *self.path))


def parse_reference(text: str) -> Reference | None:
    """Parse ``text`` as a reference; ``None`` when it is a literal.

    Raises :class:`ReferenceSyntaxError` for a string that starts like a
    reference but is not one, so a typo never passes silently as a literal.

    >>> parse_reference("$goal.destination")
    Reference(source='goal', path=('destination',))
    >>> parse_reference("$$5") is None, parse_reference("Lisbon") is None
    (True, True)
    """
    if not text.startswith("$") or text.startswith("$$"):
        return None
    if text == "$":
        raise ReferenceSyntaxError(text, "it names no source")
    source, *path = text[1:].split(".")
    if not source:
        raise ReferenceSyntaxError(text, "the source before the first '.' is empty")
    if not _SOURCE.fullmatch(source):
        raise ReferenceSyntaxError(
            text, f"source {source!r} is not 'goal' or a task id (letters, digits, '_', '-')"
        )
    for index, segment in enumerate(path, start=2):
        if not segment:
            raise ReferenceSyntaxError(text, f"segment {index} is empty")
        if not _SEGMENT.fullmatch(segment):
            raise ReferenceSyntaxError(
                text, f"segment {segment!r} is not a field name or a list index"
            )
    return Reference(source=source, path=tuple(path))


def unescape(text: str) -> str:
    """The literal a non-reference string stands for (``"$$5"`` -> ``"$5"``).

    >>> unescape("$$5"), unescape("Lisbon")
    ('$5', 'Lisbon')
    """
    return text[1:] if text.startswith("$$") else text


def iter_strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` that starts with a single ``$``, depth first, in order.

    Dict keys are names, not values, so they are never references.
    """
    if isinstance(value, str):
        if value.startswith("$") and not value.startswith("$$"):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_strings(item)


def references_in(value: Any) -> list[Reference]:
    """Every reference in ``value`` (nested lists and dicts walked in order).

    >>> references_in({"a": ["$goal.x", "$$lit", 3], "b": "$price.total"})
    [Reference(source='goal', path=('x',)), Reference(source='price', path=('total',))]
    """
    found: list[Reference] = []
    for text in iter_strings(value):
        ref = parse_reference(text)
        if ref is not None:
            found.append(ref)
    return found
