"""What the worker pool's CLI tests share: running the CLI, reading its JSON, watching a worker.

``invoke`` runs ``ledgerflow`` in-process (click's runner, 200 columns unless
told); the rest poll a worker subprocess for a bounded time and fail naming
what never happened (never asserting how long anything took).
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from replay_pool_workflows import WORKFLOW_REF

from ledgerflow.replay.cli import main

#: How long a test waits for a worker subprocess to reach a point before it fails.
PATIENCE_S = 60.0


def invoke(*args: str, columns: int = 200) -> Result:
    return CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)},
                              catch_exceptions=False)


def submit(db: str, goal: dict[str, Any] | None = None) -> str:
    result = invoke("submit", WORKFLOW_REF, "--goal", json.dumps(goal or {}), "--db", db)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[-1]


def runs_doc(db: str, *args: str) -> dict[str, dict[str, Any]]:
    result = invoke("runs", "--json", "--db", db, *args)
    assert result.exit_code == 0, result.output
    return {run["run_id"]: run for run in json.loads(result.stdout)["runs"]}


def workers_doc(db: str) -> list[dict[str, Any]]:
    result = invoke("workers", "--json", "--db", db)
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.stdout)["workers"]
    return found


def wait_for(what: str, check: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (and the worker's output) if not."""
    deadline = time.monotonic() + PATIENCE_S
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"never saw {what}; worker exit {proc.returncode}\n{out}\n{err}")
        time.sleep(0.05)


def claimed_fence(log: str, run_id: str) -> int:
    """The fence a worker's log says it claimed ``run_id`` with."""
    found = re.search(rf"claimed run {run_id} \(.*, fence (\d+)\)", log)
    assert found, log
    return int(found.group(1))


def read_stderr_until(proc: subprocess.Popen[str], text: str) -> str:
    """What the worker wrote on stderr up to a line holding ``text`` (read as it is written)."""
    assert proc.stderr is not None
    fd, seen = proc.stderr.fileno(), b""
    deadline = time.monotonic() + PATIENCE_S
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail(f"the worker never said {text!r}; it said:\n{seen.decode()}")
        seen += chunk
    return seen.decode()
