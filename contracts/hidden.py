"""One output's secrets while it is validated: revealed for the check, hidden again after.

:func:`ledgerflow.contracts.validation.validate_output` checks the real
values (a key too short is invalid whether or not the log shows it), then
hands back a value holding the same references the output came with, and
error lines that quote none of the secrets. Pure: the same output and vault
give the same verdict, so a replay decides as the run did.

Example::

    >>> from pydantic import BaseModel, SecretStr
    >>> class Key(BaseModel):
    ...     key: SecretStr
    >>> hidden = HiddenSecrets.of(Key, {"key": {"$secret": "sec_1"}}, {"sec_1": "sk-live"})
    >>> hidden.revealed
    {'key': 'sk-live'}
    >>> hidden.masked(Key.model_validate(hidden.revealed))
    {'key': {'$secret': 'sec_1'}}
    >>> hidden.scrub("bad key sk-live")
    'bad key [redacted]'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from pydantic import BaseModel

from ledgerflow.contracts.secrets import (
    blank,
    blankable,
    contract_schema,
    dump_revealed,
    map_secrets,
    ref_of,
    refs_in,
    reveal,
    secret_ref,
)

__all__ = ["HiddenSecrets", "SecretsGoneError"]



class SecretsGoneError(Exception):
    """The vault no longer holds a secret the output refers to: it cannot be checked."""

    def __init__(self, refs: list[str]) -> None:
        self.refs = refs
        super().__init__(
            f"secret {', '.join(refs[:3])}{' and more' if len(refs) > 3 else ''} is no longer "
            "in the store's vault (erased), so the output cannot be checked")


class SecretChangedError(ValueError):
    """Validation changed a secret's value: the reference would no longer name it."""


@dataclass
class HiddenSecrets:
    """An output's references, their values, and the output with them revealed."""

    revealed: Any
    missing: list[str]
    had_refs: bool
    by_value: dict[bytes, str] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, model: type[BaseModel], raw: Any,
           secrets: Mapping[str, Any] | None) -> HiddenSecrets:
        """Reveal ``raw``'s references with ``secrets`` (reference → value)."""
        del model  # the references, not the contract, say where the secrets are
        data = dump_revealed(raw) if isinstance(raw, BaseModel) else raw
        refs = list(dict.fromkeys(refs_in(data)))
        known = secrets or {}
        missing = [ref for ref in refs if ref not in known]
        if missing or not refs:
            return cls(revealed=data, missing=missing, had_refs=bool(refs))
        values = {ref: known[ref] for ref in refs}
        return cls(
            revealed=reveal(data, values.__getitem__),
            missing=[],
            had_refs=True,
            by_value={msgspec.json.encode(v): ref for ref, v in values.items()},
            texts=blankable(values.values()),
        )

    def masked(self, validated: BaseModel) -> Any:
        """The validated value as the log holds it: each secret back behind its reference."""
        def hide(value: Any) -> Any:
            if value is None or ref_of(value) is not None:
                return value
            ref = self.by_value.get(msgspec.json.encode(value))
            if ref is not None:
                return secret_ref(ref)
            if not self.had_refs:
                # An output from before secrets were kept (an old log): it already
                # holds the value in clear, and replaying it must decide the same.
                return value
            raise SecretChangedError(
                "a secret field's value was changed by its validator (stripped or "
                "converted); send it in its final form, secrets are kept as sent")

        return map_secrets(dump_revealed(validated), contract_schema(type(validated)), hide)

    def scrub(self, text: str) -> str:
        """``text`` with every secret string of the output replaced by ``[redacted]``."""
        scrubbed: str = blank(text, self.texts)
        return scrubbed
