"""Run ids as users type them: every command that takes a RUN accepts a unique
prefix; an ambiguous one lists the candidates; an unknown one says so."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel, travel_unreviewed
from ledgerflow.machines import Orchestrator, RunNotFoundError
from ledgerflow.replay.cli import main
from ledgerflow.replay.errors import RunIdAmbiguousError
from ledgerflow.replay.runids import SHOWN_CANDIDATES, pick_run_id

GOAL = {"destination": "Lisbon", "passengers": 2}


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Runs aa11 and aa12 (completed) and bb77 (waiting on its price task)."""
    path = tmp_path_factory.mktemp("runids") / "ledgerflow.db"

    async def go() -> None:
        async with open_store(path) as store:
            orch = Orchestrator(store)
            for run_id in ("aa11", "aa12"):
                assert (await orch.start(travel.wf, GOAL, run_id=run_id)).status == "completed"
            waiting = await orch.start(travel_unreviewed.wf, GOAL, run_id="bb77")
            assert waiting.status == "waiting"

    asyncio.run(go())
    return path


@pytest.fixture
def db(template: Path, tmp_path: Path) -> str:
    """A fresh copy of the template store (some commands append to it)."""
    for file in template.parent.iterdir():
        shutil.copy(file, tmp_path / file.name)
    return str(tmp_path / template.name)


# (command with RUN as a unique prefix, what the output then names)
UNIQUE = [
    (["show", "aa11"], "run aa11 "),
    (["show", "b"], "run bb77 "),
    (["log", "b", "--format", "jsonl"], '"seq":1'),
    (["replay", "b", "--to", "3"], "run bb77 after seq 3"),
    (["verify", "b"], "PASS  chain"),
    (["resume", "b"], "run bb77: waiting"),
    (["fork", "b", "--at", "3", "--no-continue"], "from bb77 at seq 3"),
    (["diff", "b", "bb"], "bb77 and bb77 make the same decisions"),
    (["resolve", "b", "price", "--retry"], "run bb77: waiting"),
]


@pytest.mark.parametrize(("args", "expected"), UNIQUE, ids=[" ".join(a) for a, _ in UNIQUE])
def test_a_unique_prefix_names_the_run(db: str, args: list[str], expected: str) -> None:
    code, out = cli(*args, "--db", db)
    assert code == 0, out
    assert expected in out


COMMANDS = [["show"], ["log"], ["replay"], ["verify"], ["resume"], ["fork", "--at", "2"],
            ["resolve", "--retry"], ["diff"]]


def place(command: list[str], run: str) -> list[str]:
    """Put RUN (and the second RUN of diff, or the TASK of resolve) where it goes."""
    name, *rest = command
    if name == "resolve":
        return [name, run, "price", *rest]
    if name == "diff":
        return [name, "bb77", run]
    return [name, run, *rest]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_ambiguous_prefix_is_one_line_listing_the_candidates(
    db: str, command: list[str]
) -> None:
    code, out = cli(*place(command, "aa"), "--db", db)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("Error: The run id 'aa' is ambiguous")
    assert "aa11, aa12" in line


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_an_unknown_prefix_says_there_is_no_such_run(db: str, command: list[str]) -> None:
    code, out = cli(*place(command, "zz"), "--db", db)
    assert code == 1
    (line,) = [ln for ln in out.splitlines() if ln.strip()]
    assert line.startswith("Error: No run 'zz'")


def test_an_exact_id_wins_over_longer_ids_it_prefixes() -> None:
    assert pick_run_id("r1", ["r1", "r10", "r11"]) == "r1"


def test_many_candidates_are_cut_and_marked() -> None:
    many = [f"ab{i:02d}" for i in range(SHOWN_CANDIDATES + 1)]
    with pytest.raises(RunIdAmbiguousError) as caught:
        pick_run_id("ab", many)
    assert caught.value.candidates == tuple(many[:SHOWN_CANDIDATES])
    assert "and more" in str(caught.value)


def test_no_candidate_is_run_not_found() -> None:
    with pytest.raises(RunNotFoundError):
        pick_run_id("zz", [])
