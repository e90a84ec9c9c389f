"""Read-only audit: the reading commands work on a store the user cannot write,
and no reading command ever creates a store or a schema.

Root ignores file permissions, so the commands run in a real subprocess that
drops to uid/gid 65534 (nobody). That user cannot reach this interpreter's
prefix under /root, so the subprocess runs the system python3.11 with the
checkout and a copy of the installed dependencies on PYTHONPATH.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import open_store
from ledgerflow.examples import travel
from ledgerflow.machines import Orchestrator
from ledgerflow.replay.cli import main

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
NOBODY = 65534
DEPENDENCIES = ("click", "msgspec", "rich", "pydantic", "pydantic_core", "aiosqlite",
                "transitions", "typing_extensions", "annotated_types", "markdown_it_py",
                "mdurl", "pygments", "typing_inspection", "six")
PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not SYSTEM_PYTHON.exists(),
    reason="dropping to uid 65534 needs root and a system python of this version")


@pytest.fixture(scope="module")
def site_copy() -> Iterator[Path]:
    """The installed dependencies, copied where uid 65534 can read them.

    Not under pytest's tmp_path: its base folder is private to root.
    """
    with tempfile.TemporaryDirectory(prefix="ledgerflow-site-") as tmp:
        dest = Path(tmp)
        _copy_dependencies(dest)
        yield dest


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A fresh folder that uid 65534 can reach (but not write)."""
    with tempfile.TemporaryDirectory(prefix="ledgerflow-audit-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o755)
        try:
            yield folder
        finally:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o755)


def _copy_dependencies(dest: Path) -> None:
    for name in DEPENDENCIES:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            src = Path(str(dist.locate_file(file)))
            if ".." in file.parts or src.suffix == ".pyc" or not src.is_file():
                continue
            (dest / file).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / file)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def start_runs(db: Path, count: int) -> list[str]:
    async def go() -> list[str]:
        async with open_store(db) as store:
            orch = Orchestrator(store)
            return [(await orch.start(travel.wf, travel.TripGoal(destination="Lisbon",
                                                                 passengers=2))).run_id
                    for _ in range(count)]

    return asyncio.run(go())


def snapshot(folder: Path) -> dict[str, tuple[str, int, float]]:
    """Every file in the folder: its hash, mode and modification time."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode, p.stat().st_mtime)
        for p in sorted(folder.iterdir())
    }


def as_nobody(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "ledgerflow.replay.cli", *args],
        user=NOBODY, group=NOBODY, extra_groups=[], cwd="/", capture_output=True, text=True,
        env={"PYTHONPATH": f"{REPO}:{site}", "PATH": "/usr/bin:/bin", "COLUMNS": "200",
             "HOME": "/nonexistent"},
        timeout=120, check=False,
    )


@needs_root
def test_reading_commands_work_on_a_store_the_user_cannot_write(
    open_tmp: Path, site_copy: Path
) -> None:
    folder = open_tmp / "audit"
    folder.mkdir()
    db = folder / "ledgerflow.db"
    first, second = start_runs(db, 2)
    db.chmod(0o444)
    folder.chmod(0o555)
    before = snapshot(folder)
    wf = "ledgerflow.examples.travel:wf"
    commands = {
        "runs": (["runs"], 0, first),
        "runs --json": (["runs", "--json"], 0, second),
        "show": (["show", first[:6]], 0, "timeline"),
        "log": (["log", first, "--format", "jsonl"], 0, '"hash"'),
        "replay": (["replay", first, "--to", "5"], 0, "after seq 5"),
        "verify": (["verify", first, "--workflow", wf], 0, "PASS  determinism"),
        "verify recorded": (["verify", second], 0, "3 checks passed"),
        "diff same": (["diff", first, first], 0, "make the same decisions"),
        # Two runs of one goal differ in their start times and booking references.
        "diff": (["diff", first, second], 1, "decisions part at seq 1"),
    }
    try:
        for label, (args, code, expected) in commands.items():
            done = as_nobody(site_copy, *args, "--db", str(db))
            assert done.returncode == code, (label, done.stdout, done.stderr)
            assert expected in done.stdout, (label, done.stdout)
        refused = as_nobody(site_copy, "resume", first, "--db", str(db))
        assert refused.returncode == 1, refused.stderr
        assert refused.stderr.count("Error") == 1
        assert "Traceback" not in refused.stderr
    finally:
        after = snapshot(folder)
        folder.chmod(0o755)
    assert after == before, "a reading command changed the folder (no -wal, -shm or edits)"


def assert_one_error_line(out: str) -> None:
    assert out.count("Error") == 1, out
    assert "Traceback" not in out


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


READERS = [["runs"], ["show", "abc"], ["log", "abc"], ["replay", "abc"], ["verify", "abc"],
           ["diff", "abc", "def"]]


@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
def test_a_missing_store_is_one_line_and_nothing_is_created(
    tmp_path: Path, args: list[str]
) -> None:
    missing = tmp_path / "typo.db"
    code, out = invoke(*args, "--db", str(missing))
    assert code == 1, out
    assert_one_error_line(out)
    assert str(missing) in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
def test_a_zero_byte_file_is_refused_and_stays_zero_bytes(
    tmp_path: Path, args: list[str]
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    code, out = invoke(*args, "--db", str(empty))
    assert code == 1, out
    assert_one_error_line(out)
    assert empty.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]


@pytest.mark.skipif(not PG_DSN, reason="needs LEDGERFLOW_TEST_PG_DSN")
@pytest.mark.parametrize("args", READERS, ids=[a[0] for a in READERS])
def test_a_mistyped_postgres_schema_is_refused_and_not_created(args: list[str]) -> None:
    import asyncpg  # noqa: PLC0415 - only this test needs it

    schema = f"typo_{uuid.uuid4().hex[:10]}"
    sep = "&" if "?" in PG_DSN else "?"
    code, out = invoke(*args, "--db", f"{PG_DSN}{sep}schema={schema}")
    assert code == 1, out
    assert_one_error_line(out)
    assert schema in out

    async def exists() -> bool:
        conn = await asyncpg.connect(PG_DSN)
        try:
            found = await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                schema)
        finally:
            await conn.close()
        return bool(found)

    assert not asyncio.run(exists())
