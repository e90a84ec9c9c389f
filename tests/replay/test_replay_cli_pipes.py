"""A reader that goes away (``| head -1``) is not an error: the command keeps
the exit code of its result (``diff`` of differing runs stays 1) and prints
nothing on stderr. Real pipelines, repeated, since when the pipe breaks
depends on timing."""

from __future__ import annotations

import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner

from ledgerflow.replay.cli import main

CLI = f"{shlex.quote(sys.executable)} -m ledgerflow.replay.cli"
REPEATS = 3


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """A completed demo run and a run of another workflow waiting on 'price'."""
    db = str(tmp_path_factory.mktemp("pipes") / "p.db")
    done = CliRunner().invoke(main, ["demo", "--db", db], catch_exceptions=False)
    waiting = CliRunner().invoke(
        main, ["run", "ledgerflow.examples.travel_unreviewed:wf", "--goal",
               '{"destination": "Lisbon", "passengers": 2}', "--db", db],
        catch_exceptions=False)
    run_a = next(ln for ln in done.output.splitlines() if ln.startswith("run ")).split()[1]
    return db, run_a.rstrip(":"), waiting.output.split()[1].rstrip(":")


def exit_code_alone(args: str) -> int:
    return subprocess.run(f"{CLI} {args}", shell=True, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False).returncode


def piped(args: str, lines: int) -> tuple[int, str]:
    """(the command's exit code, its stderr) in ``ledgerflow ARGS | head -LINES``."""
    script = f"{CLI} {args} 2>&3 | head -{lines} >/dev/null; exit ${{PIPESTATUS[0]}}"
    proc = subprocess.run(["bash", "-c", f"{{ {script}; }} 3>&2"], capture_output=True,
                          text=True, check=False)
    return proc.returncode, proc.stderr


COMMANDS = {
    "diff of differing runs": ("diff A B", 1),
    "diff of a run with itself": ("diff A A", 0),
    "show": ("show A", 0),
    "replay": ("replay A", 0),
    "replay --step": ("replay A --step", 0),
    "log": ("log A", 0),
    "log --format csv": ("log A --format csv", 0),
    "log --format jsonl": ("log A --format jsonl", 0),
    "runs": ("runs", 0),
    "verify": ("verify A", 0),
    "show of a missing run": ("show nope", 1),
}


@pytest.mark.parametrize(("args", "expected"), COMMANDS.values(), ids=COMMANDS.keys())
def test_a_closed_pipe_keeps_the_exit_code_of_the_result_and_prints_nothing(
    two_runs: tuple[str, str, str], args: str, expected: int
) -> None:
    db, run_a, run_b = two_runs
    words = [{"A": run_a, "B": run_b}.get(w, w) for w in args.split()]
    line = " ".join(shlex.quote(w) for w in [*words, "--db", db])
    heads = [1] * REPEATS + [2, 3]
    # The pipelines are independent processes: run them side by side.
    with ThreadPoolExecutor(max_workers=3) as pool:
        alone = pool.submit(exit_code_alone, line)
        results = list(pool.map(lambda lines: piped(line, lines), heads))
    assert alone.result() == expected
    for lines, (code, err) in zip(heads, results, strict=True):
        assert code == expected, (lines, err)
        if expected == 0 or args.startswith("diff"):
            assert err == "", err
