"""What a log records for an error does not depend on where its class lives, and names
recorded by earlier versions are upgraded on decode, by a table pinned here."""

from __future__ import annotations

import importlib
import pkgutil

import msgspec
import pytest
from machines_helpers import SEARCH, Goal, SearchIn, SearchOut, of, read_log, workflow

import ledgerflow
from ledgerflow import machines
from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import EventStore
from ledgerflow.machines import events as ev
from ledgerflow.machines.stable_names import (
    StableNameError,
    check_stable_name,
    exception_names,
    stable_name,
)
from ledgerflow.machines.upcasting import (
    ERROR_NAME_MOVES,
    WORKFLOW_MODULE_MOVES,
    upcast_error_name,
    upcast_failure_names,
    upcast_workflow_ref,
)


class CardDeclinedError(Exception):
    __ledgerflow_name__ = "billing.CardDeclined"


class ExpiredCardError(CardDeclinedError):
    """Declares nothing: records its own module path, and its base's stable name."""


class MisnamedError(Exception):
    __ledgerflow_name__ = "has spaces"


def _own_error_classes() -> list[type[BaseException]]:
    for info in pkgutil.walk_packages(ledgerflow.__path__, "ledgerflow."):
        importlib.import_module(info.name)
    found: list[type[BaseException]] = []
    todo: list[type[BaseException]] = [LedgerflowError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("ledgerflow") and cls not in found:
            found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_ledgerflow_errors_record_a_name_free_of_their_module() -> None:
    assert stable_name(machines.PermanentError) == "ledgerflow.PermanentError"
    assert exception_names(machines.PermanentError) == [
        "ledgerflow.PermanentError", "ledgerflow.LedgerflowError",
        "builtins.Exception", "builtins.BaseException"]


def test_no_two_ledgerflow_errors_share_a_stable_name() -> None:
    classes = _own_error_classes()
    names = [stable_name(cls) for cls in classes]
    assert len(classes) > 20
    assert len(set(names)) == len(names), sorted(n for n in names if names.count(n) > 1)


def test_a_user_class_records_its_declared_name_and_its_subclass_does_not_inherit_it() -> None:
    assert exception_names(CardDeclinedError)[0] == "billing.CardDeclined"
    assert exception_names(ExpiredCardError)[:2] == [
        f"{__name__}.ExpiredCardError", "billing.CardDeclined"]
    assert stable_name(KeyError) == "builtins.KeyError"


def test_an_unusable_declared_name_fails_at_declaration_and_falls_back_when_recorded() -> None:
    with pytest.raises(StableNameError, match="has spaces"):
        machines.RetryPolicy(permanent=(MisnamedError,))
    with pytest.raises(machines.WorkflowDefinitionError):
        check_stable_name(MisnamedError)
    assert stable_name(MisnamedError) == f"{__name__}.MisnamedError"


def test_policy_classifies_a_failure_by_the_declared_name_wherever_the_class_moved() -> None:
    moved = type("CardDeclined", (Exception,), {"__ledgerflow_name__": "billing.CardDeclined",
                                                "__module__": "billing.v2.errors"})
    policy = machines.RetryPolicy(permanent=(moved,))
    assert not policy.is_transient(exception_names(CardDeclinedError))
    assert policy.is_transient(["builtins.KeyError", "builtins.Exception"])


async def test_agent_raising_a_declared_error_records_it_and_escalates(store: EventStore) -> None:
    wf = workflow([SEARCH], name="stable-names-card")

    @wf.agent(input=SearchIn, output=SearchOut, name="search",
              retry=machines.RetryPolicy(max_attempts=3, backoff_s=0.0,
                                         permanent=(CardDeclinedError,)))
    async def search(inp: SearchIn, ctx: machines.AgentContext) -> SearchOut:
        raise ExpiredCardError("card expired")

    run = await machines.Orchestrator(store).start(wf, Goal())
    [failed] = of(await read_log(store, run.run_id), ev.AgentFailed)
    assert failed.error_types[:2] == [f"{__name__}.ExpiredCardError", "billing.CardDeclined"]
    assert run.status == "waiting"
    assert run.state.escalations["search"].kind == "permanent_error"


# -- the upcast table ----------------------------------------------------------------

SYNTHETIC = {"ledgerflow.UnloggableOutput", "ledgerflow.OutputTooLarge"}


def test_every_upcast_target_is_a_name_todays_code_records() -> None:
    current = {stable_name(cls) for cls in _own_error_classes()} | SYNTHETIC
    assert set(ERROR_NAME_MOVES.values()) <= current, set(ERROR_NAME_MOVES.values()) - current


@pytest.mark.parametrize(("old", "new"), [
    ("machines.errors.PermanentError", "ledgerflow.PermanentError"),
    ("runledger.errors.RunledgerError", "ledgerflow.LedgerflowError"),
    ("runledger.InputContractError", "ledgerflow.InputContractError"),
    ("runledger.UnloggableOutput", "ledgerflow.UnloggableOutput"),
    ("runledger.OutputTooLarge", "ledgerflow.OutputTooLarge"),
    ("eventstore.errors.ConcurrencyError", "ledgerflow.ConcurrencyError"),
    ("ledgerflow.machines.errors.PermanentError", "ledgerflow.PermanentError"),
    ("ledgerflow.errors.LedgerflowError", "ledgerflow.LedgerflowError"),
], ids=lambda v: v)
def test_a_recorded_error_name_is_upgraded_by_the_table(old: str, new: str) -> None:
    assert upcast_error_name(old) == new
    assert upcast_error_name(new) == new  # idempotent: a current name never moves


def test_names_that_never_moved_are_left_alone() -> None:
    for name in ("builtins.TimeoutError", "asyncio.exceptions.CancelledError",
                 "billing.CardDeclined", "ledgerflow.PermanentError"):
        assert upcast_error_name(name) == name
    assert upcast_failure_names("builtins.KeyError", ["builtins.KeyError"]) is None


def test_a_recorded_workflow_ref_of_a_moved_module_is_upgraded() -> None:
    assert upcast_workflow_ref("examples.travel:wf") == "ledgerflow.examples.travel:wf"
    assert upcast_workflow_ref("examples.travel_unreviewed:wf") == (
        "ledgerflow.examples.travel_unreviewed:wf")
    assert upcast_workflow_ref("examples.mine:wf") == "examples.mine:wf"  # not ours
    assert upcast_workflow_ref("") == ""
    for moved in WORKFLOW_MODULE_MOVES.values():
        importlib.import_module(moved)


def test_decoding_upgrades_names_but_never_the_stored_bytes() -> None:
    stored = (b'{"type":"AgentFailed","task_id":"a","attempt":1,"error_type":'
              b'"machines.errors.PermanentError","error_types":["machines.errors.PermanentError",'
              b'"runledger.errors.RunledgerError","builtins.Exception"]}')
    event = machines.decode_event(stored)
    assert isinstance(event, ev.AgentFailed)
    assert (event.error_type, event.error_types) == (
        "ledgerflow.PermanentError",
        ["ledgerflow.PermanentError", "ledgerflow.LedgerflowError", "builtins.Exception"])
    assert b"machines.errors" in stored
    started = machines.decode_event(
        b'{"type":"RunStarted","workflow":"travel","workflow_ref":"examples.travel:wf",'
        b'"goal":{},"started_at":"x","max_concurrency":1}')
    assert isinstance(started, ev.RunStarted)
    assert started.workflow_ref == "ledgerflow.examples.travel:wf"
    assert b"log_format" not in machines.encode_event(started)  # format 1 stays implicit


def test_an_unknown_event_type_is_refused_as_from_a_newer_version() -> None:
    with pytest.raises(ev.EventTooNewError, match="upgrade ledgerflow") as caught:
        machines.decode_event(b'{"type":"TaskTeleported","task_id":"a"}')
    assert caught.value.event_type == "TaskTeleported"
    assert isinstance(caught.value, msgspec.ValidationError)  # old handlers still catch it
    assert isinstance(caught.value, LedgerflowError)


@pytest.mark.parametrize("data", [b'{"task_id":"a"}', b"[1,2]", b'{"type":7}',
                                  b'{"type":"TaskReady"}'],
                         ids=["no-tag", "not-an-object", "tag-not-a-string", "missing-field"])
def test_corrupt_data_is_not_mistaken_for_a_newer_version(data: bytes) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        machines.decode_event(data)
    assert not isinstance(caught.value, ev.EventTooNewError)
