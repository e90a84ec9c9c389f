"""Static reasoning about annotations: walk a reference path, spot obvious mismatches.

Both questions are answered conservatively: when an annotation is something
this module does not understand it says "can't tell" (:data:`OPAQUE`), and
check_plan stays quiet. A false alarm would reject a plan that works.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel
from typing_extensions import is_typeddict

__all__ = [
    "OPAQUE",
    "Found",
    "Missing",
    "Opaque",
    "field_names",
    "is_number",
    "obviously_incompatible",
    "path_annotation",
    "suggest",
    "type_name",
]

_NONE = type(None)
_SEQUENCES: frozenset[Any] = frozenset(
    {
        list,
        tuple,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
    }
)
_SETS: frozenset[Any] = frozenset({set, frozenset, collections.abc.Set, collections.abc.MutableSet})
_MAPPINGS: frozenset[Any] = frozenset(
    {dict, collections.abc.Mapping, collections.abc.MutableMapping}
)


@dataclass(frozen=True)
class Found:
    """The path exists; ``annotation`` is the declared type there."""

    annotation: Any


@dataclass(frozen=True)
class Missing:
    """The path does not exist; ``message`` says why (a clause, no final period)."""

    message: str


@dataclass(frozen=True)
class Opaque:
    """This module cannot tell whether the path exists or what type it has."""


OPAQUE = Opaque()


def type_name(annotation: Any) -> str:
    """A short human name for an annotation (``float``, ``list[LineItem]``)."""
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return repr(annotation).replace("typing.", "").replace("typing_extensions.", "")


def suggest(name: str, choices: list[str]) -> str:
    """``"did you mean 'total'? "`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys ``model.model_dump()`` produces, declared order (computed fields last)."""
    return [*model.model_fields, *model.model_computed_fields]


def _strip(annotation: Any) -> Any:
    # Annotated metadata and NewType wrappers do not change what a value is.
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif isinstance(annotation, typing.NewType):
            annotation = annotation.__supertype__
        else:
            return annotation


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType)


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _hints(annotation: Any) -> dict[str, Any] | None:
    # TypedDicts and dataclasses dump to dicts too; their hints may not resolve.
    try:
        return get_type_hints(annotation)
    except Exception:
        return None


def _fields_message(owner: str, segment: str, names: list[str]) -> Missing:
    listed = ", ".join(sorted(names)) or "none"
    hint = suggest(segment, names)
    return Missing(f"{owner} declares no field {segment!r} ({hint}fields: {listed})")


def _step(annotation: Any, segment: str, where: str, at_root: bool) -> Found | Missing | Opaque:
    ann = _strip(annotation)
    if _is_union(ann):
        results = [_step(m, segment, where, at_root) for m in get_args(ann) if m is not _NONE]
        if any(isinstance(r, Opaque) for r in results):
            return OPAQUE
        found = {repr(r.annotation): r for r in results if isinstance(r, Found)}
        if len(found) == 1:
            return next(iter(found.values()))
        if found:
            return OPAQUE  # several types possible: nothing obvious to check against
        return results[0] if results else OPAQUE
    if ann is Any or ann is object or isinstance(ann, typing.TypeVar):
        return OPAQUE
    owner = type_name(ann) if at_root else f"{type_name(ann)} (at {where})"
    if _is_model(ann):
        if segment in ann.model_fields:
            return Found(ann.model_fields[segment].annotation)
        if segment in ann.model_computed_fields:
            return Found(ann.model_computed_fields[segment].return_type)
        return _fields_message(owner, segment, field_names(ann))
    if isinstance(ann, type) and (is_typeddict(ann) or dataclasses.is_dataclass(ann)):
        hints = _hints(ann)
        if hints is None:
            return OPAQUE
        if segment in hints:
            return Found(hints[segment])
        return _fields_message(owner, segment, list(hints))
    origin = get_origin(ann) or ann
    args = get_args(ann)
    if origin in _SEQUENCES:
        if not segment.isdigit():
            return Missing(f"{where} is a {type_name(ann)}, so {segment!r} must be a numeric index")
        if not args:
            return OPAQUE
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if args == ((),) or int(segment) >= len(args):
                return Missing(f"{where} is a {type_name(ann)} with {len(args)} items")
            return Found(args[int(segment)])
        return Found(args[0])
    if origin in _MAPPINGS:
        return Found(args[1]) if len(args) == 2 else OPAQUE
    if isinstance(ann, type) and issubclass(ann, str | int | float | bool | bytes | enum.Enum):
        return Missing(f"{where} is a {type_name(ann)}, which has no field {segment!r}")
    if get_origin(ann) is Literal:
        return Missing(f"{where} is a {type_name(ann)}, which has no field {segment!r}")
    return OPAQUE


def path_annotation(root: Any, source: str, path: tuple[str, ...]) -> Found | Missing | Opaque:
    """The annotation at ``path`` inside ``root``, or why it does not exist.

    >>> class Out(BaseModel):
    ...     total: float
    >>> path_annotation(Out, "price", ("total",))
    Found(annotation=<class 'float'>)
    >>> path_annotation(Out, "price", ("totl",)).message
    "Out declares no field 'totl' (did you mean 'total'? fields: total)"
    """
    current: Found | Missing | Opaque = Found(root)
    walked = [source]
    for segment in path:
        if not isinstance(current, Found):
            return current
        current = _step(current.annotation, segment, "$" + ".".join(walked), len(walked) == 1)
        walked.append(segment)
    return current


_Kind = str | type[BaseModel] | None


def _literal_kind(values: tuple[Any, ...]) -> _Kind:
    kinds = {_kind(type(v.value) if isinstance(v, enum.Enum) else type(v)) for v in values}
    return kinds.pop() if len(kinds) == 1 else None


def _kind(ann: Any) -> _Kind:
    """The JSON shape of ``ann``: str, number, bool, list, dict, none, a model; None if unsure."""
    if ann is _NONE:
        return "none"
    if get_origin(ann) is Literal:
        return _literal_kind(get_args(ann))
    if isinstance(ann, type):
        if issubclass(ann, BaseModel):
            return ann
        if issubclass(ann, bool):
            return "bool"
        if issubclass(ann, enum.Enum):
            # Only str- and int-valued enums serialise to an obvious JSON shape.
            return "str" if issubclass(ann, str) else "number" if issubclass(ann, int) else None
        if issubclass(ann, str):
            return "str"
        if issubclass(ann, int | float):
            return "number"
        if is_typeddict(ann) or dataclasses.is_dataclass(ann):
            return "dict"
    origin = get_origin(ann) or ann
    if origin in _SEQUENCES or origin in _SETS:
        return "list"
    if origin in _MAPPINGS:
        return "dict"
    return None  # Any, object, datetime, Decimal, UUID, ...: JSON shape not obvious


def is_number(annotation: Any) -> bool:
    """Whether ``annotation`` holds an int or float (Optional and Annotated allowed).

    >>> is_number(float | None), is_number(bool)
    (True, False)
    """
    ann = _strip(annotation)
    members = [m for m in get_args(ann) if m is not _NONE] if _is_union(ann) else [ann]
    return bool(members) and all(_kind(_strip(m)) == "number" for m in members)


def _element(ann: Any) -> Any:
    origin, args = get_origin(ann), get_args(ann)
    if origin is tuple:
        return args[0] if len(args) == 2 and args[1] is Ellipsis else None
    if origin in _MAPPINGS:
        return args[1] if len(args) == 2 else None
    return args[0] if len(args) == 1 else None


def _fits(source: type[BaseModel], target: type[BaseModel]) -> bool:
    # Related classes, or a source dump that carries every field the target requires.
    if issubclass(source, target) or issubclass(target, source):
        return True
    required = {n for n, f in target.model_fields.items() if f.is_required()}
    return required <= set(source.model_fields)


_LOOSE_PAIRS = frozenset({("number", "bool"), ("bool", "number")})


def obviously_incompatible(source: Any, target: Any) -> bool:
    """Whether a value typed ``source`` can clearly never satisfy ``target``.

    Only shape clashes count (str vs number, list vs scalar, unrelated models);
    int -> float, X -> Optional[X], Literal["a"] -> str and anything involving
    Any or an unfamiliar type pass.

    >>> obviously_incompatible(str, float), obviously_incompatible(int, float | None)
    (True, False)
    """
    src, dst = _strip(source), _strip(target)
    if _is_union(dst):
        return all(obviously_incompatible(src, m) for m in get_args(dst))
    if _is_union(src):
        # An Optional source is judged by its value: None at run time is not obvious now.
        members = [m for m in get_args(src) if m is not _NONE] or [_NONE]
        return all(obviously_incompatible(m, dst) for m in members)
    sk, dk = _kind(src), _kind(dst)
    if sk is None or dk is None or sk == "none":
        return False
    if dk == "none":
        return True
    if isinstance(sk, type) and isinstance(dk, type):
        return not _fits(sk, dk)
    if isinstance(sk, type):
        return dk != "dict"
    if isinstance(dk, type):
        return sk != "dict"
    if sk == dk:
        if sk in ("list", "dict"):
            se, de = _element(src), _element(dst)
            return se is not None and de is not None and obviously_incompatible(se, de)
        return False
    return (sk, dk) not in _LOOSE_PAIRS
