"""Worker processes for the pool tests, and the waits and log checks the stories share.

A :class:`WorkerProcess` is ``pool_worker_child.py`` in its own process, with
stdout and stderr in files (a pipe nobody reads would block a chatty child).
Waits poll the store until a condition holds, with a generous timeout that
only turns a hang into a failure; nothing here measures time.

Example::

    worker = await WorkerProcess.start(url, tmp_path / "w1")
    await wait_for(lambda: all_terminal(store, run_ids), "every run to finish")
    stats = worker.terminate()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledgerflow.eventstore import EventStore, RunSummary

__all__ = ["CHILD", "NEEDS_PG", "PG_DSN", "TERMINAL", "PgPlace", "WorkerProcess", "fresh_pg_place",
           "owned_by", "summaries", "wait_for"]

#: A PostgreSQL database the tests may create schemas in ("" skips the PostgreSQL tests).
PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
NEEDS_PG = ("PostgreSQL tests need LEDGERFLOW_TEST_PG_DSN "
            "(e.g. postgresql://postgres@127.0.0.1:5432/test)")
CHILD = Path(__file__).with_name("pool_worker_child.py")
TERMINAL = frozenset({"completed", "failed", "cancelled"})


async def wait_for(
    condition: Callable[[], Awaitable[bool]], what: str, *, timeout_s: float = 120.0,
    pause_s: float = 0.05,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout_s
    while not await condition():
        if loop.time() > give_up:
            raise AssertionError(f"gave up waiting for {what} after {timeout_s:g}s")
        await asyncio.sleep(pause_s)


async def summaries(store: EventStore, run_ids: Sequence[str]) -> dict[str, RunSummary]:
    """The runs' summaries by id (every one must exist)."""
    wanted = set(run_ids)
    listed = {s.run_id: s for s in await store.runs(limit=len(wanted) + 1000)
              if s.run_id in wanted}
    assert set(listed) == wanted, f"runs missing from the store: {sorted(wanted - set(listed))}"
    return listed


async def owned_by(store: EventStore, run_ids: Sequence[str], worker_id: str) -> set[str]:
    """The runs whose live lease ``worker_id`` holds now."""
    return {r for r, s in (await summaries(store, run_ids)).items() if s.owner == worker_id}


@dataclass(frozen=True)
class PgPlace:
    """A store URL on a fresh PostgreSQL schema, and a second schema for the test's sink."""

    dsn: str
    url: str
    sink_schema: str


@contextlib.asynccontextmanager
async def fresh_pg_place() -> AsyncIterator[PgPlace]:
    """Fresh schema names (store and sink) on ``PG_DSN``; both dropped at the end."""
    import asyncpg  # noqa: PLC0415 - only PostgreSQL tests need it

    schema = f"rlt_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    try:
        yield PgPlace(PG_DSN, f"{PG_DSN}{sep}schema={schema}", f"{schema}_sink")
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            for name in (schema, f"{schema}_sink"):
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()


@dataclass
class WorkerProcess:
    """One ``pool_worker_child.py`` process and where its output goes."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path
    worker_id: str = ""

    @classmethod
    async def start(cls, url: str, base: Path, *options: str) -> WorkerProcess:
        """Start a worker on ``url``; returns once it printed its worker id."""
        out, err = base.with_suffix(".out"), base.with_suffix(".err")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, polled below
                [sys.executable, str(CHILD), url, *options], stdout=stdout, stderr=stderr,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        worker = cls(proc, out, err)

        async def printed_its_id() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode} before starting:\n"
                                     + worker.stderr())
            return bool(out.read_text().strip())

        await wait_for(printed_its_id, "a worker to print its id", timeout_s=60)
        worker.worker_id = out.read_text().splitlines()[0].strip()
        return worker

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exited(self, timeout_s: float = 60.0) -> int:
        """Wait for the process to end; its exit code."""
        async def ended() -> bool:
            return self.proc.poll() is not None

        await wait_for(ended, f"worker {self.worker_id} to exit", timeout_s=timeout_s)
        return self.proc.returncode

    async def terminate(self) -> dict[str, Any]:
        """SIGTERM (drain), wait for exit 0, and return the stats it printed."""
        self.signal(signal.SIGTERM)
        code = await self.exited()
        assert code == 0, f"worker {self.worker_id} exited with {code}:\n{self.stderr()}"
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """The ``WorkerStats`` the child printed on its last line."""
        stats: dict[str, Any] = json.loads(self.out.read_text().splitlines()[-1])
        return stats

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def kill(self) -> None:
        """Whatever state it is in: SIGCONT (a stopped process ignores SIGKILL's reaping) + KILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
