"""References parse strictly and resolve to exactly the declared inputs."""

from __future__ import annotations

import pytest

from ledgerflow.contracts import (
    Reference,
    ReferenceResolutionError,
    ReferenceSyntaxError,
    Task,
    parse_reference,
    references_in,
    resolve_inputs,
)

GOAL = {"destination": "Lisbon", "passengers": 2, "dates": {"start": "2025-05-01", "end": "x"}}
OUTPUTS = {
    "price": {
        "total": 310.0,
        "currency": "EUR",
        "confidence": 0.9,
        "items": [{"label": "fare", "amount": 300.0}, {"label": "tax", "amount": 10.0}],
    }
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$goal.destination", Reference("goal", ("destination",))),
        ("$goal.dates.start", Reference("goal", ("dates", "start"))),
        ("$price.items.0.amount", Reference("price", ("items", "0", "amount"))),
        ("$price", Reference("price", ())),
        ("$$5", None),
        ("Lisbon", None),
        ("", None),
    ],
)
def test_parse_reference_reads_source_and_path(text: str, expected: Reference | None) -> None:
    assert parse_reference(text) == expected


@pytest.mark.parametrize("text", ["$", "$.x", "$a..b", "$a.", "$1abc.x", "$a.b c"])
def test_malformed_reference_raises_with_the_text(text: str) -> None:
    with pytest.raises(ReferenceSyntaxError) as caught:
        parse_reference(text)
    assert caught.value.text == text
    assert str(caught.value).endswith("escape a literal dollar sign as '$$'.")


def test_reference_str_round_trips() -> None:
    assert str(Reference("price", ("items", "0"))) == "$price.items.0"


def test_references_in_walks_nested_values_in_order() -> None:
    value = {"a": ["$goal.x", {"k": "$price.total"}, "$$lit", 3], "b": "$goal.y"}
    assert references_in(value) == [
        Reference("goal", ("x",)),
        Reference("price", ("total",)),
        Reference("goal", ("y",)),
    ]


def test_resolve_inputs_gives_only_declared_fields() -> None:
    task = Task(
        id="book",
        agent="book",
        needs=["price"],
        inputs={
            "amount": "$price.total",
            "destination": "$goal.destination",
            "fare": "$price.items.0.amount",
            "lines": ["$price.items.1.label", {"from": "$goal.dates.start"}],
            "note": "$$5 off",
            "count": 3,
        },
    )
    assert resolve_inputs(task, GOAL, OUTPUTS) == {
        "amount": 310.0,
        "destination": "Lisbon",
        "fare": 300.0,
        "lines": ["tax", {"from": "2025-05-01"}],
        "note": "$5 off",
        "count": 3,
    }


def test_resolved_values_are_copies_of_upstream_outputs() -> None:
    task = Task(id="book", agent="book", needs=["price"], inputs={"items": "$price.items"})
    resolved = resolve_inputs(task, GOAL, OUTPUTS)
    resolved["items"][0]["amount"] = 0
    assert OUTPUTS["price"]["items"][0]["amount"] == 300.0  # type: ignore[index]


@pytest.mark.parametrize(
    ("reference", "needs", "missing"),
    [
        ("$price.totl", ["price"], "$price has no key 'totl'"),
        ("$price.items.5.amount", ["price"], "$price.items has 2 items, so index 5 is missing"),
        ("$price.items.first", ["price"], "'first' must be a numeric index"),
        ("$price.total.cents", ["price"], "$price.total is float, which has no 'cents'"),
        ("$price.total", [], "task 'price' is not in the needs of task 'book'"),
        ("$search.flights", ["search"], "there is no output of task 'search'"),
    ],
    ids=["key", "index", "not-index", "scalar", "not-needed", "no-output"],
)
def test_unresolvable_reference_names_task_field_and_what_is_missing(
    reference: str, needs: list[str], missing: str
) -> None:
    task = Task(id="book", agent="book", needs=needs, inputs={"amount": reference})
    with pytest.raises(ReferenceResolutionError) as caught:
        resolve_inputs(task, GOAL, OUTPUTS)
    error = caught.value
    assert (error.task_id, error.field, error.reference) == ("book", "amount", reference)
    assert missing in error.missing
    assert str(error).startswith(f"Cannot build input 'amount' of task 'book' from {reference!r}")
