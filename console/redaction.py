"""Masking secret fields before anything is shown: the console, its API, the one-file page.

A field is secret when its contract says so: the property's JSON schema (as
pydantic's ``model_json_schema()`` writes it) carries ``"redact": true``
(``Field(json_schema_extra={"redact": True})``), ``"writeOnly": true`` or
``"format": "password"`` (both of which :class:`pydantic.SecretStr` sets).
A secret value is replaced by the string :data:`REDACTED`; ``None`` stays
``None`` (an unset secret reveals nothing). Where no schema speaks for a
key (no workflow at hand, an extra key the contract does not declare), a
key whose name looks secret (:func:`looks_secret`) is masked instead.

Both functions are pure: they return a masked copy and never touch their
argument.

Example::

    >>> schema = {"properties": {"user": {"type": "string"},
    ...                          "password": {"type": "string", "format": "password",
    ...                                       "writeOnly": True},
    ...                          "pin": {"type": "string", "redact": True}}}
    >>> redact({"user": "ana", "password": "hunter2", "pin": "1234"}, schema)
    {'user': 'ana', 'password': '[redacted]', 'pin': '[redacted]'}
    >>> redact({"api_key": "sk-1", "tokens": 5}, None)
    {'api_key': '[redacted]', 'tokens': 5}
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ledgerflow.contracts.secrets import map_secrets, marks_secret

if TYPE_CHECKING:
    from ledgerflow.machines import Workflow

__all__ = ["REDACTED", "looks_secret", "redact", "redact_run_document", "redact_schema"]

#: What a masked value is shown as.
REDACTED = "[redacted]"

#: Words of a key's name that mark it secret (``api_key`` and ``apiKey`` are
#: the words "api" "key"; checked apart so "tokens", a usage count, is not).
_SECRET_WORDS = frozenset({
    "password", "passwd", "pwd", "passphrase", "secret", "secrets", "token", "apikey",
    "authorization", "auth", "credential", "credentials", "cookie", "privatekey",
})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z]|\d|\b|_)|[A-Z]?[a-z]+|[A-Z]+|\d+")

Schema = Mapping[str, Any]


def looks_secret(name: str) -> bool:
    """Whether a key's name says it holds a secret (the rule used when no schema speaks).

    Example::

        >>> [looks_secret(n) for n in ("api_key", "apiKey", "X-Auth-Token", "tokens", "note")]
        [True, True, True, False, False]
    """
    words = [w.lower() for w in _WORD.findall(name)]
    if not words:
        return False
    if any(w in _SECRET_WORDS for w in words) or "".join(words) in _SECRET_WORDS:
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def _by_name(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: REDACTED if looks_secret(str(k)) and v is not None else _by_name(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_name(v) for v in value]
    return value


def _masked(value: Any) -> Any:
    return None if value is None else REDACTED


def _undeclared(key: str, value: Any) -> Any:
    """A key the contract does not declare: judged by its name."""
    return REDACTED if looks_secret(key) and value is not None else _by_name(value)


def redact(value: Any, schema: Schema | None) -> Any:
    """``value`` with every field its JSON ``schema`` marks secret replaced by ``"[redacted]"``.

    ``schema`` is a JSON schema as ``model_json_schema()`` writes it (its
    ``$defs`` and local ``$ref``\\ s are followed, as are arrays, ``anyOf``,
    ``oneOf`` and ``allOf``); with ``None``, keys are judged by their names
    (:func:`looks_secret`).

    Example::

        >>> redact({"card": {"number": "4111", "cvc": "123"}},
        ...        {"properties": {"card": {"$ref": "#/$defs/Card"}},
        ...         "$defs": {"Card": {"properties": {"cvc": {"writeOnly": True}}}}})
        {'card': {'number': '4111', 'cvc': '[redacted]'}}
    """
    if schema is None:
        return _by_name(value)
    return map_secrets(value, schema, _masked, undeclared=_undeclared)


def redact_schema(schema: Schema) -> dict[str, Any]:
    """A JSON schema to show (the escalation form): no ``default``/``examples`` of a secret.

    Example::

        >>> redact_schema({"properties": {"pin": {"redact": True, "default": "0000"}}})
        {'properties': {'pin': {'redact': True}}}
    """
    def clean(node: Any) -> Any:
        if isinstance(node, Mapping):
            secret = marks_secret(node)
            return {k: clean(v) for k, v in node.items()
                    if not (secret and k in ("default", "examples", "const", "enum"))}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node
    return dict(clean(schema))


class _Contracts:
    """The JSON schemas of a workflow's contracts, each built once per document."""

    def __init__(self, workflow: Workflow | None) -> None:
        self.workflow = workflow
        self._cache: dict[tuple[str, str], Schema | None] = {}

    def schema(self, agent: str | None, side: str) -> Schema | None:
        key = (agent or "", side)
        if key not in self._cache:
            self._cache[key] = self._build(agent, side)
        return self._cache[key]

    def _build(self, agent: str | None, side: str) -> Schema | None:
        wf = self.workflow
        if wf is None:
            return None
        if side == "goal":
            return wf.goal.model_json_schema()
        spec = wf.agents.get(agent or "")
        if spec is None:
            return None
        model = spec.input if side == "input" else spec.output
        return model.model_json_schema()


#: Which side of a task's contract each key of a document holds.
_SIDES = {"input": "input", "inputs": "input", "output": "output", "candidate": "output"}
#: Keys of a page event no contract describes: a journaled step's request and
#: result, and the event's other fields.
_UNTYPED = ("request", "result", "data")


def _task_agents(doc: Mapping[str, Any]) -> dict[str, str]:
    tasks = doc.get("tasks")
    rows: list[Any] = []
    if isinstance(tasks, Mapping):
        rows = [{"id": tid, **t} for tid, t in tasks.items() if isinstance(t, Mapping)]
    elif isinstance(tasks, list):
        rows = tasks
    agents: dict[str, str] = {}
    for row in rows:
        if isinstance(row, Mapping):
            tid = row.get("id", row.get("task_id"))
            if isinstance(tid, str) and isinstance(row.get("agent"), str):
                agents[tid] = row["agent"]
    return agents


def _entry(entry: Any, task_id: Any, agents: Mapping[str, str], contracts: _Contracts,
           extra: Callable[[dict[str, Any], Callable[[Any, str], Any]], None] | None = None
           ) -> Any:
    """One task-shaped entry: its input/output/candidate keys masked by the task's contract."""
    if not isinstance(entry, Mapping):
        return entry
    out = dict(entry)
    tid = out.get("id", out.get("task_id", out.get("task", task_id)))
    agent = out.get("agent") if isinstance(out.get("agent"), str) else None
    agent = agent or (agents.get(tid) if isinstance(tid, str) else None)

    def mask(value: Any, side: str) -> Any:
        if value is None:
            return None
        return redact(value, contracts.schema(agent, side))

    for key, side in _SIDES.items():
        if key in out:
            out[key] = mask(out[key], side)
    for key in _UNTYPED:  # no contract describes them: judged by their keys' names
        if key in out:
            out[key] = redact(out[key], None)
    if extra is not None:
        extra(out, mask)
    return out


def _changes(out: dict[str, Any], mask: Callable[[Any, str], Any]) -> None:
    # A state diff entry {"field", "before", "after"} shows the same values a task holds.
    changes = out.get("changes")
    if not isinstance(changes, list):
        return
    masked: list[Any] = []
    for change in changes:
        if isinstance(change, Mapping) and change.get("field") in _SIDES:
            side = _SIDES[str(change["field"])]
            masked.append({**change, "before": mask(change.get("before"), side),
                           "after": mask(change.get("after"), side)})
        else:
            masked.append(change)
    out["changes"] = masked


def _each(container: Any, fn: Callable[[Any, Any], Any]) -> Any:
    if isinstance(container, Mapping):
        return {key: fn(item, key) for key, item in container.items()}
    if isinstance(container, list):
        return [fn(item, None) for item in container]
    return container


def redact_run_document(doc: Mapping[str, Any], workflow: Workflow | None) -> dict[str, Any]:
    """A run document with every task input, output and candidate masked by its contract.

    Works on the ``replay --json`` document (``tasks`` and ``escalations``
    keyed by task id), the ``show --json`` one (lists), and the page
    document of :func:`ledgerflow.console.page_data.page_document` (also
    its ``events`` details, whose ``changes`` name the field they change,
    and its ``attempts``). The goal is masked by the workflow's goal
    contract. With ``workflow=None`` keys are judged by their names.

    Example::

        safe = redact_run_document(state.to_dict(), wf)
    """
    contracts = _Contracts(workflow)
    agents = _task_agents(doc)
    out = dict(doc)
    if "goal" in out and out["goal"] is not None:
        out["goal"] = redact(out["goal"], contracts.schema(None, "goal"))

    def task(entry: Any, key: Any) -> Any:
        return _entry(entry, key, agents, contracts)

    def detailed(entry: Any, key: Any) -> Any:
        return _entry(entry, key, agents, contracts, _changes)

    for key in ("tasks", "escalations", "attempts"):
        if key in out:
            out[key] = _each(out[key], task)
    if "events" in out:
        out["events"] = _each(out["events"], detailed)
    return out
