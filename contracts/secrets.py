"""Secret fields of a contract: which they are, and the reference the log holds instead.

A field is secret when its JSON schema (as pydantic's ``model_json_schema()``
writes it) carries ``"redact": true`` (``Field(json_schema_extra={"redact":
True})``, or :func:`secret_field`), ``"writeOnly": true`` or ``"format":
"password"`` (both of which :class:`pydantic.SecretStr` sets).

The log never holds a secret's value: where one would be, it holds a
reference, ``{"$secret": "sec_..."}`` (:func:`secret_ref`), and the value
itself goes to the store's vault, outside the hash chain. This module is the
pure part: finding secret positions in a value (:func:`map_secrets`),
swapping values for references (:func:`split_secrets`) and back
(:func:`reveal`), and dumping a model without pydantic's ``**********`` mask
(:func:`dump_revealed`).

Example::

    >>> from pydantic import BaseModel, SecretStr
    >>> class Login(BaseModel):
    ...     user: str
    ...     password: SecretStr
    >>> data = dump_revealed(Login(user="ana", password=SecretStr("hunter2")))
    >>> data
    {'user': 'ana', 'password': 'hunter2'}
    >>> masked, vault = split_secrets(data, Login.model_json_schema(), lambda: "sec_1")
    >>> masked, vault
    ({'user': 'ana', 'password': {'$secret': 'sec_1'}}, {'sec_1': 'hunter2'})
    >>> reveal(masked, vault.__getitem__)
    {'user': 'ana', 'password': 'hunter2'}
"""

from __future__ import annotations

import collections.abc
import functools
import secrets as _random
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, Field, SecretBytes, SecretStr

__all__ = [
    "BLANKED",
    "SECRET_KEY",
    "blank",
    "blankable",
    "contract_has_secrets",
    "dump_revealed",
    "map_secrets",
    "marks_secret",
    "new_secret_ref",
    "ref_of",
    "refs_in",
    "reveal",
    "schema_has_secrets",
    "secret_field",
    "secret_ref",
    "split_secrets",
]

#: The one key of a reference object in the log.
SECRET_KEY = "$secret"  # noqa: S105 - a key name, not a password
_REF_PREFIX = "sec_"

Schema = Mapping[str, Any]


def secret_field(*, description: str | None = None, **kwargs: Any) -> Any:
    """A pydantic ``Field`` marked secret (what ``json_schema_extra={"redact": True}`` says).

    Example::

        >>> class Card(BaseModel):
        ...     number: str = secret_field(description="the card number")
        >>> Card.model_json_schema()["properties"]["number"]["redact"]
        True
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["redact"] = True
    return Field(description=description, json_schema_extra=extra, **kwargs)


def new_secret_ref() -> str:
    """A fresh reference name: 128 random bits, unique across runs (so forks share them)."""
    return _REF_PREFIX + _random.token_hex(16)


def secret_ref(ref: str) -> dict[str, str]:
    """The object the log holds in place of a secret value."""
    return {SECRET_KEY: ref}


def ref_of(value: Any) -> str | None:
    """The reference ``value`` is, or None if it is not one.

    >>> ref_of({"$secret": "sec_ab"}), ref_of({"$secret": "sec_ab", "x": 1}), ref_of("sec_ab")
    ('sec_ab', None, None)
    """
    if (type(value) is dict or isinstance(value, Mapping)) and len(value) == 1:
        ref = value.get(SECRET_KEY)
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            return ref
    return None


#: Types that hold no reference: a walk never looks inside them.
_LEAVES = frozenset({str, int, float, bool, type(None)})


def refs_in(value: Any) -> Iterator[str]:
    """Every reference anywhere inside ``value`` (any depth, any key).

    On every value an agent gets or returns: exact type checks first (the
    log's data is dicts and lists), the abstract ``Mapping`` only for others.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind in _LEAVES:
            continue
        if kind is dict or isinstance(item, Mapping):
            if len(item) == 1 and (ref := ref_of(item)) is not None:
                yield ref
            else:
                stack.extend(item.values())
        elif kind is list or isinstance(item, list | tuple):
            stack.extend(item)


def reveal(value: Any, lookup: Callable[[str], Any]) -> Any:
    """``value`` with every reference replaced by ``lookup(ref)``; ``value`` if it holds none."""
    kind = type(value)
    if kind in _LEAVES:
        return value
    if kind is dict or isinstance(value, Mapping):
        ref = ref_of(value)
        if ref is not None:
            return lookup(ref)
        return {k: reveal(v, lookup) for k, v in value.items()}
    if kind is list or isinstance(value, list | tuple):
        return [reveal(v, lookup) for v in value]
    return value


#: Shorter secret strings are not blanked out of prose: "ok" would mangle every line.
_BLANK_MIN = 4
#: What a blanked secret reads as.
BLANKED = "[redacted]"


def blankable(values: Iterable[Any]) -> list[str]:
    """The secret strings worth blanking out of text, longest first (so a secret that
    contains another is blanked whole)."""
    return sorted({v for v in values if isinstance(v, str) and len(v) >= _BLANK_MIN},
                  key=len, reverse=True)


def blank(value: Any, secrets: list[str]) -> Any:
    """``value`` (a text, or JSON data) with each of ``secrets`` (:func:`blankable`)
    replaced by ``[redacted]`` wherever a string holds it.

    >>> blank({"prompt": "authorize sk-live-1", "n": 3}, blankable(["sk-live-1"]))
    {'prompt': 'authorize [redacted]', 'n': 3}
    """
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, BLANKED)
        return value
    if isinstance(value, Mapping):
        return {k: blank(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [blank(v, secrets) for v in value]
    return value


def marks_secret(node: Schema) -> bool:
    """Whether one JSON schema node marks its value secret."""
    return (node.get("redact") is True or node.get("writeOnly") is True
            or node.get("format") == "password")


def _resolve(ref: str, root: Schema) -> Schema | None:
    # Only local refs ("#/$defs/Name", "#/definitions/Name", "#"): pydantic writes no other.
    if not ref.startswith("#"):
        return None
    node: Any = root
    for raw in ref[1:].split("/"):
        if not raw:
            continue
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, Mapping) else None


def _flatten(node: Any, root: Schema, out: list[Schema], seen: set[int]) -> bool:
    """Collect ``node`` and every schema its ``$ref``/``anyOf``/``oneOf``/``allOf`` names.

    Returns whether any of them marks the value secret (a union with one
    secret branch is secret: the value might be that branch).
    """
    if not isinstance(node, Mapping) or id(node) in seen:
        return False
    seen.add(id(node))
    secret = marks_secret(node)
    out.append(node)
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root)
        if target is not None:
            secret = _flatten(target, root, out, seen) or secret
    for key in ("anyOf", "oneOf", "allOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            for branch in branches:
                secret = _flatten(branch, root, out, seen) or secret
    return secret


def _keep(key: str, value: Any) -> Any:
    return value


class _Walk:
    """One walk of a value along its schema (see :func:`map_secrets`)."""

    def __init__(self, root: Schema, at_secret: Callable[[Any], Any],
                 undeclared: Callable[[str, Any], Any]) -> None:
        self.root = root
        self.at_secret = at_secret
        self.undeclared = undeclared

    def value(self, value: Any, node: Any) -> Any:
        nodes: list[Schema] = []
        if _flatten(node, self.root, nodes, set()):
            return self.at_secret(value)
        if isinstance(value, Mapping):
            return self.object(value, nodes)
        if isinstance(value, list | tuple):
            return self.array(list(value), nodes)
        return value

    def object(self, value: Mapping[Any, Any], nodes: list[Schema]) -> Any:
        out: dict[Any, Any] = {}
        for key, item in value.items():
            subs: list[Any] = []
            for node in nodes:
                props = node.get("properties")
                if isinstance(props, Mapping) and key in props:
                    subs.append(props[key])
                else:
                    extra = node.get("additionalProperties")
                    if isinstance(extra, Mapping):
                        subs.append(extra)
            out[key] = (self.value(item, {"anyOf": subs}) if subs
                        else self.undeclared(str(key), item))
        return out

    def array(self, items: list[Any], nodes: list[Schema]) -> Any:
        out: list[Any] = []
        for at, item in enumerate(items):
            subs: list[Any] = []
            for node in nodes:
                prefix = node.get("prefixItems")
                if isinstance(prefix, list) and at < len(prefix):
                    subs.append(prefix[at])
                elif isinstance(node.get("items"), Mapping):
                    subs.append(node["items"])
            out.append(self.value(item, {"anyOf": subs}) if subs
                       else self.undeclared(str(at), item))
        return out


def map_secrets(value: Any, schema: Schema, at_secret: Callable[[Any], Any], *,
                undeclared: Callable[[str, Any], Any] = _keep) -> Any:
    """A copy of ``value`` with ``at_secret(v)`` at every position ``schema`` marks secret.

    ``schema`` is a JSON schema as ``model_json_schema()`` writes it: its
    ``$defs`` and local ``$ref``\\ s are followed, as are arrays, ``anyOf``,
    ``oneOf`` and ``allOf``. A key or item no schema describes goes to
    ``undeclared(key, item)`` (kept as it is by default).

    Example::

        >>> map_secrets({"card": {"number": "4111", "cvc": "123"}},
        ...             {"properties": {"card": {"$ref": "#/$defs/Card"}},
        ...              "$defs": {"Card": {"properties": {"cvc": {"writeOnly": True}}}}},
        ...             lambda v: "***")
        {'card': {'number': '4111', 'cvc': '***'}}
    """
    return _Walk(schema, at_secret, undeclared).value(value, schema)


def split_secrets(value: Any, schema: Schema, new_ref: Callable[[], str] = new_secret_ref
                  ) -> tuple[Any, dict[str, Any]]:
    """``value`` with each secret replaced by a fresh reference, and the references' values.

    ``None`` stays ``None`` (an unset secret reveals nothing) and a position
    that already holds a reference keeps it.
    """
    vault: dict[str, Any] = {}

    def keep(item: Any) -> Any:
        if item is None or ref_of(item) is not None:
            return item
        ref = new_ref()
        vault[ref] = item
        return secret_ref(ref)

    return map_secrets(value, schema, keep), vault


def schema_has_secrets(schema: Schema) -> bool:
    """Whether any node of ``schema`` (its ``$defs`` included) marks a value secret."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if marks_secret(node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


@functools.lru_cache(maxsize=512)
def contract_has_secrets(model: type[BaseModel]) -> bool:
    """Whether a contract declares any secret field (asked once per model).

    A model whose fields are all plain JSON types (and models of them) with
    no schema extras is answered from its fields alone; any other is asked
    of its JSON schema, which building costs about a third of a millisecond
    (paid by every short-lived process, once per contract).
    """
    if _plainly_free_of_secrets(model, set()):
        return False
    return schema_has_secrets(contract_schema(model))


_PLAIN = frozenset({str, int, float, bool, type(None), Any, object})
_CONTAINERS = frozenset({list, dict, tuple, set, frozenset, typing.Union, types.UnionType,
                         typing.Optional, collections.abc.Sequence, collections.abc.Mapping})


def _plainly_free_of_secrets(model: type[BaseModel], seen: set[type]) -> bool:
    """True only when no field can be secret: plain types, no extras, no custom schema.

    Conservative: anything it does not know (Annotated metadata, a custom
    type, a field with ``json_schema_extra``) answers False, and the JSON
    schema decides.
    """
    if model in seen:
        return True
    seen.add(model)
    if model.model_config.get("json_schema_extra") is not None or \
            "__get_pydantic_json_schema__" in model.__dict__:
        return False
    for info in model.model_fields.values():
        if info.json_schema_extra is not None or info.metadata:
            return False
        if not _plain_annotation(info.annotation, seen):
            return False
    return True


def _plain_annotation(annotation: Any, seen: set[type]) -> bool:
    if annotation in _PLAIN:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _plainly_free_of_secrets(annotation, seen)
    origin = typing.get_origin(annotation)
    if origin is None or origin not in _CONTAINERS:
        return False
    return all(arg is Ellipsis or _plain_annotation(arg, seen)
               for arg in typing.get_args(annotation))


@functools.lru_cache(maxsize=512)
def contract_schema(model: type[BaseModel]) -> Schema:
    """The JSON schema secrets are found by, built once per model.

    By field name, not alias: it walks what ``model_dump`` and the log hold.
    """
    return model.model_json_schema(by_alias=False)


def dump_revealed(model: BaseModel) -> Any:
    """``model.model_dump(mode="json")``, but with each ``SecretStr``/``SecretBytes`` revealed.

    Pydantic dumps a secret as ``"**********"``: handed on as data, that
    string would reach the next agent in place of the key.
    """
    dumped = model.model_dump(mode="json")
    return _reveal_into(dumped, model)


def _reveal_into(dumped: Any, value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode("utf-8", "replace")
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        for name in type(value).model_fields:
            if name in dumped:
                dumped[name] = _reveal_into(dumped[name], getattr(value, name, None))
        return dumped
    if isinstance(value, list | tuple) and isinstance(dumped, list) and len(value) == len(dumped):
        return [_reveal_into(d, v) for d, v in zip(dumped, value, strict=True)]
    if isinstance(value, Mapping) and isinstance(dumped, dict):
        for key, item in value.items():
            if isinstance(key, str) and key in dumped:
                dumped[key] = _reveal_into(dumped[key], item)
        return dumped
    return dumped
