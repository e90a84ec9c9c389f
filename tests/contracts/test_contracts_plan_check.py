"""check_plan: every problem code, reported once, in a stable order."""

from __future__ import annotations

from typing import Any

import pytest
from contracts_travel import AGENTS, TripGoal

from ledgerflow.contracts import (
    AgentContract,
    Plan,
    PlanProblem,
    PlanRejectedError,
    ProblemCode,
    Task,
    check_plan,
)


def _price(**changes: Any) -> Task:
    fields: dict[str, Any] = {
        "id": "price",
        "agent": "pricing",
        "inputs": {"destination": "$goal.destination", "passenger_count": "$goal.passengers"},
    }
    fields.update(changes)
    return Task(**fields)


def _book(**changes: Any) -> Task:
    fields: dict[str, Any] = {
        "id": "book",
        "agent": "book",
        "needs": ["price"],
        "inputs": {"amount": "$price.total", "destination": "$goal.destination"},
    }
    fields.update(changes)
    return Task(**fields)


def _check(*tasks: Task, agents: dict[str, AgentContract] | None = None) -> list[PlanProblem]:
    return check_plan(Plan(tasks=list(tasks)), TripGoal, AGENTS if agents is None else agents)


def _codes(problems: list[PlanProblem]) -> list[str]:
    return [p.code for p in problems]


def test_the_articles_travel_plan_is_accepted() -> None:
    search = Task(
        id="search",
        agent="flights",
        inputs={"destination": "$goal.destination", "dates": "$goal.dates", "cabin": "business"},
    )
    price = _price(
        needs=["search"], inputs={**_price().inputs, "fares": ["$search.flights.0.price"]}
    )
    assert _check(search, price, _book()) == []


def test_context_contract_mismatch_is_rejected_at_plan_time() -> None:
    # The article's story: book reads a field pricing never promised to produce.
    problems = _check(_price(), _book(inputs={"amount": "$price.totl", "destination": "x"}))
    assert problems == [
        PlanProblem(
            ProblemCode.UNKNOWN_FIELD,
            "book",
            "Task 'book' maps 'amount' from '$price.totl', but PricingOutput declares no field "
            "'totl' (did you mean 'total'? fields: confidence, currency, items, total).",
            "amount",
        )
    ]


def test_empty_plan_is_rejected() -> None:
    assert _codes(_check()) == ["empty_plan"]


def test_duplicate_task_id_is_rejected_on_the_second_task() -> None:
    problems = _check(_price(), _price())
    assert [(p.code, p.task_id) for p in problems] == [("duplicate_task", "price")]
    assert "tasks 1 and 2" in problems[0].message


def test_task_id_goal_is_reserved() -> None:
    assert _codes(_check(_price(id="goal"))) == ["reserved_task_id"]


def test_unknown_agent_is_rejected_with_a_suggestion() -> None:
    problems = _check(_price(agent="pricer"))
    assert _codes(problems) == ["unknown_agent"]
    assert "did you mean 'pricing'?" in problems[0].message


def test_needs_naming_an_unknown_task_is_rejected() -> None:
    problems = _check(_price(), _book(needs=["price", "prize"]))
    assert _codes(problems) == ["unknown_task"]
    assert "'prize'" in problems[0].message


def test_needs_naming_goal_is_rejected() -> None:
    assert _codes(_check(_price(needs=["goal"]))) == ["unknown_task"]


def test_dependency_cycle_names_the_cycle() -> None:
    a = Task(id="a", agent="book", needs=["b"], inputs={"amount": 1, "destination": "x"})
    b = Task(id="b", agent="book", needs=["c"], inputs={"amount": 1, "destination": "x"})
    c = Task(id="c", agent="book", needs=["a"], inputs={"amount": 1, "destination": "x"})
    problems = _check(a, b, c)
    assert problems == [
        PlanProblem(
            ProblemCode.DEPENDENCY_CYCLE,
            None,
            "Tasks form a dependency cycle: a -> b -> c -> a (each needs the next); "
            "remove one of these needs.",
        )
    ]


def test_task_needing_itself_is_a_cycle() -> None:
    problems = _check(_price(needs=["price"]))
    assert _codes(problems) == ["dependency_cycle"]
    assert "price -> price" in problems[0].message


def test_reference_to_task_not_in_needs_is_rejected() -> None:
    problems = _check(_price(), _book(needs=[]))
    assert _codes(problems) == ["reference_not_needed"]
    assert problems[0].task_id == "book"
    assert "add 'price' to needs" in problems[0].message


def test_reference_to_unknown_source_is_rejected() -> None:
    problems = _check(_price(), _book(inputs={"amount": "$prise.total", "destination": "x"}))
    assert _codes(problems) == ["unknown_reference_source"]


def test_malformed_reference_is_rejected() -> None:
    problems = _check(_price(), _book(inputs={"amount": "$price..total", "destination": "x"}))
    assert _codes(problems) == ["bad_reference"]
    assert "segment 2 is empty" in problems[0].message


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("$goal.dates.begin", "DateRange (at $goal.dates) declares no field 'begin'"),
        ("$price.items.first", "'first' must be a numeric index"),
        ("$price.items.0.amt", "LineItem (at $price.items.0) declares no field 'amt'"),
        ("$price.total.cents", "$price.total is a float, which has no field 'cents'"),
    ],
    ids=["optional-nested-model", "list-needs-index", "list-element-model", "scalar"],
)
def test_unknown_nested_field_is_rejected(reference: str, fragment: str) -> None:
    problems = _check(_price(), _book(inputs={"amount": reference, "destination": "x"}))
    assert _codes(problems)[:1] == ["unknown_field"]
    assert fragment in problems[0].message


def test_input_the_agent_does_not_declare_is_rejected() -> None:
    problems = _check(_price(), _book(inputs={**_book().inputs, "travellers": "$goal.passengers"}))
    assert _codes(problems) == ["undeclared_input"]
    assert problems[0].field == "travellers"


def test_required_input_left_unmapped_is_rejected() -> None:
    problems = _check(_price(), _book(inputs={"amount": "$price.total"}))
    assert [(p.code, p.field) for p in problems] == [("missing_input", "destination")]


@pytest.mark.parametrize(
    ("amount", "destination"),
    [
        ("$goal.destination", "x"),  # str -> float
        ("$price.items", "x"),  # list -> float
        (1.0, "$goal.passengers"),  # int -> str
        (1.0, "$goal.dates"),  # model -> str
    ],
    ids=["str-to-float", "list-to-float", "int-to-str", "model-to-str"],
)
def test_obvious_type_mismatch_is_rejected(amount: object, destination: object) -> None:
    problems = _check(_price(), _book(inputs={"amount": amount, "destination": destination}))
    assert _codes(problems) == ["type_mismatch"]


def test_unrelated_model_is_a_type_mismatch() -> None:
    search = Task(
        id="search",
        agent="flights",
        needs=["price"],
        inputs={"destination": "x", "dates": "$price.items.0"},
    )
    assert _codes(_check(_price(), search)) == ["type_mismatch"]


def test_compatible_types_are_not_flagged() -> None:
    # int -> float, Optional[float] -> float, literal enum value, JSON literal list.
    book = _book(inputs={"amount": "$goal.passengers", "destination": "$goal.destination"})
    book2 = _book(id="book2", needs=[], inputs={"amount": "$goal.budget", "destination": "x"})
    price = _price(inputs={**_price().inputs, "fares": [1, 2.5], "currency": "USD"})
    assert _check(price, book, book2) == []


def test_literal_the_field_rejects_is_invalid() -> None:
    problems = _check(_price(), _book(inputs={"amount": "about 300", "destination": "x"}))
    assert _codes(problems) == ["invalid_literal"]
    assert problems[0].message == (
        "Task 'book' gives 'amount' the literal 'about 300', which BookingInput.amount rejects: "
        "Input should be a valid number, unable to parse string as a number (got 'about 300')."
    )


def test_literal_is_checked_against_field_constraints() -> None:
    price = _price(inputs={"destination": "x", "passenger_count": 0})
    problems = _check(price)
    assert _codes(problems) == ["invalid_literal"]
    assert "greater than 0" in problems[0].message


def test_escaped_dollar_literal_is_a_string_not_a_reference() -> None:
    assert _check(_price(), _book(inputs={"amount": 5, "destination": "$$5 island"})) == []


def test_every_problem_is_found_in_plan_order() -> None:
    problems = _check(
        Task(id="a", agent="nobody", needs=["a"]),
        _price(inputs={"destination": 3, "passenger_count": "$goal.passengers"}),
        _book(needs=[], inputs={"amount": "$price.totl", "extra": 1}),
    )
    assert [(p.code, p.task_id, p.field) for p in problems] == [
        ("dependency_cycle", None, None),
        ("unknown_agent", "a", None),
        ("invalid_literal", "price", "destination"),
        ("reference_not_needed", "book", "amount"),
        ("unknown_field", "book", "amount"),
        ("undeclared_input", "book", "extra"),
        ("missing_input", "book", "destination"),
    ]


def test_check_plan_is_deterministic() -> None:
    tasks = [
        Task(id="a", agent="book", needs=["b"], inputs={"amount": "$b.total"}),
        Task(id="b", agent="pricing", needs=["a"], inputs={"destination": 1}),
        _book(inputs={"amount": "$zzz.q", "destination": "$goal.nope"}),
    ]
    first = check_plan(Plan(tasks=tasks), TripGoal, AGENTS)
    second = check_plan(Plan(tasks=list(tasks)), TripGoal, dict(reversed(AGENTS.items())))
    assert first == second
    assert len(first) > 3


def test_plan_rejected_error_lists_the_problems() -> None:
    problems = tuple(_check(_price(agent="pricer"), _book(needs=[])))
    error = PlanRejectedError(problems)
    assert error.problems == problems
    assert str(error).startswith("The plan was rejected with 2 problems: (1) Task 'price'")


def test_every_problem_code_has_a_test() -> None:
    # Pinned so a new code cannot be added without a test above.
    assert {c.value for c in ProblemCode} == {
        "unknown_agent",
        "duplicate_task",
        "unknown_task",
        "reserved_task_id",
        "dependency_cycle",
        "reference_not_needed",
        "unknown_reference_source",
        "unknown_field",
        "undeclared_input",
        "missing_input",
        "type_mismatch",
        "invalid_literal",
        "empty_plan",
        "bad_reference",
    }
