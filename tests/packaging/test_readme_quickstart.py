"""The README is checked, not trusted: its quickstart runs, its two commands are what CI runs.

The quickstart is cut out of README.md as it stands, saved as
``quickstart.py`` in an empty folder and run the way the README says
(``python -m quickstart``); the two commands at the top are pinned to what
``.ci/run`` executes and to the pinned dev tools.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def quickstart_code() -> str:
    section = README.split("## Quickstart", 1)[1]
    lang, body = code_blocks(section)[0]
    assert lang == "python"
    return body


def readme_commands() -> list[str]:
    _, body = code_blocks(README)[0]
    return [line for line in body.splitlines() if line.strip()][:2]


def test_quickstart_runs_to_completion_as_the_readme_says(tmp_path: Path) -> None:
    (tmp_path / "quickstart.py").write_text(quickstart_code(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "LEDGERFLOW_DB"}}
    done = subprocess.run(
        [sys.executable, "-m", "quickstart"], cwd=tmp_path, env=env, capture_output=True,
        text=True, check=False, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    first, *events = done.stdout.splitlines()
    assert first.split()[1] == "completed"
    assert "reference='B-" in first  # the booking output, keyed by the idempotency key
    assert events[0].split() == ["1", "RunStarted"]
    assert events[-1].split()[1] == "RunCompleted"
    assert (tmp_path / "runs.db").exists()


def test_quickstart_imports_the_public_api_in_one_line() -> None:
    imports = [line for line in quickstart_code().splitlines() if "ledgerflow" in line]
    assert len(imports) == 1
    assert imports[0].startswith("from ledgerflow import ")


def test_readme_opens_with_the_install_and_demo_then_the_suite() -> None:
    assert readme_commands() == [
        "pip install . && ledgerflow demo",
        "pip install -e '.[dev]' && python -m pytest -q",
    ]


def test_ci_runs_the_readmes_second_command_and_the_checkers() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    # .ci/run reads the command out of README.md (line 2 of its first block),
    # so the two cannot drift: run its own awk program and compare.
    program = re.search(r"awk -v want=\"\$1\" '([^']+)' README.md", ci)
    assert program is not None
    extracted = subprocess.run(
        ["awk", "-v", "want=2", program.group(1), str(REPO / "README.md")],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert extracted == readme_commands()[1]
    assert "second=$(readme_command 2)" in ci
    assert 'bash -c "$second"' in ci
    for check in ("ruff check .", "mypy --strict", "LEDGERFLOW_TEST_PG_DSN"):
        assert check in ci


def test_dev_extra_pins_the_tools_ci_checks_with() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    dev = project["optional-dependencies"]["dev"]
    pins = dict(req.split("==") for req in dev if "==" in req)
    assert set(pins) == {"ruff", "mypy"}
    for tool, version in pins.items():
        assert metadata.version(tool) == version, (
            f"{tool} {metadata.version(tool)} is installed but pyproject pins {version}; "
            "run pip install -e '.[dev]'"
        )
