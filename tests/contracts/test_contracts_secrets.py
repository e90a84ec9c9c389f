"""Secret fields at any depth: split out of the value, revealed back, validated as they were.

Hypothesis builds contracts' values with secrets in nested models, lists,
optional fields and dicts of models; every secret is a unique marker string,
so "not in the log" is a plain substring search.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr

from ledgerflow.contracts import validate_output
from ledgerflow.contracts.secrets import (
    contract_schema,
    dump_revealed,
    ref_of,
    refs_in,
    reveal,
    secret_field,
    split_secrets,
)

_counter = itertools.count()


def marker() -> str:
    return f"S3CR3T-{next(_counter):06d}-x"


class Inner(BaseModel):
    pin: SecretStr
    label: str


class Outer(BaseModel):
    key: SecretStr
    token: str = secret_field(min_length=4)
    note: str
    inners: list[Inner]
    maybe: Inner | None = None
    by_name: dict[str, Inner] = {}
    plain: dict[str, str] = {}


labels = st.text(alphabet="abcdef", max_size=5)
inners = st.builds(lambda label: Inner(pin=SecretStr(marker()), label=label), labels)
outers = st.builds(
    lambda note, items, maybe, named, plain: Outer(
        key=SecretStr(marker()), token=marker(), note=note, inners=items, maybe=maybe,
        by_name=named, plain=plain),
    labels, st.lists(inners, max_size=4), st.none() | inners,
    st.dictionaries(labels, inners, max_size=3), st.dictionaries(labels, labels, max_size=3))


def secrets_of(model: Outer) -> list[str]:
    found = [model.key.get_secret_value(), model.token]
    found += [i.pin.get_secret_value() for i in model.inners]
    found += [model.maybe.pin.get_secret_value()] if model.maybe else []
    found += [i.pin.get_secret_value() for i in model.by_name.values()]
    return found


@settings(max_examples=300, deadline=None)
@given(outers)
def test_every_secret_is_split_out_and_revealed_back_exactly(model: Outer) -> None:
    data = dump_revealed(model)
    masked, vault = split_secrets(data, contract_schema(Outer))
    text = json.dumps(masked)
    for secret in secrets_of(model):
        assert secret not in text
    assert "**********" not in text
    assert sorted(vault.values()) == sorted(secrets_of(model))
    assert sorted(refs_in(masked)) == sorted(vault)
    assert reveal(masked, vault.__getitem__) == data


@settings(max_examples=300, deadline=None)
@given(outers)
def test_a_masked_output_validates_on_its_real_values_and_keeps_its_references(
    model: Outer,
) -> None:
    masked, vault = split_secrets(dump_revealed(model), contract_schema(Outer))
    verdict = validate_output(Outer, masked, task_id="t", secrets=vault)
    assert verdict.ok, verdict.errors
    assert verdict.value == masked


def test_a_secret_breaking_its_contract_is_rejected_without_being_quoted() -> None:
    short = "abc"
    masked, vault = split_secrets(
        {"key": "k-123456", "token": short, "note": "", "inners": []}, contract_schema(Outer))
    verdict = validate_output(Outer, masked, task_id="t", secrets=vault)
    assert not verdict.ok
    assert any("at least 4 characters" in e for e in verdict.errors)
    assert all(short not in e.replace("at least", "") for e in verdict.errors)
    assert "k-123456" not in verdict.reason


def test_an_erased_secret_rejects_the_output_naming_the_reference() -> None:
    masked, vault = split_secrets(
        {"key": "k-123456", "token": "tok-1", "note": "", "inners": []}, contract_schema(Outer))
    gone = ref_of(masked["key"])
    assert gone is not None
    del vault[gone]
    verdict = validate_output(Outer, masked, task_id="t", secrets=vault)
    assert not verdict.ok
    assert gone in verdict.errors[0]
    assert "erased" in verdict.errors[0]


def test_a_log_written_before_secrets_were_kept_decides_as_it_did() -> None:
    """An old log holds a secret in clear: validating it again must give the same value."""
    clear: dict[str, Any] = {"key": "k-123456", "token": "tok-1", "note": "", "inners": []}
    verdict = validate_output(Outer, clear, task_id="t", secrets={})
    assert verdict.ok
    assert verdict.value is not None
    assert verdict.value["key"] == "k-123456"  # not "**********"
