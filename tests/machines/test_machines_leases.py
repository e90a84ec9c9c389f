"""Leases: released after a store error, taken over from a dead owner, waited for on request.

Real SQLite files and real processes: a child that is ``kill -9``-ed while
it drives a run, and a live one whose lease must be respected.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lease_child
import pytest
from machines_helpers import SEARCH, Goal, SearchIn, SearchOut, workflow

from ledgerflow.eventstore import EventStore, NewEvent, open_store
from ledgerflow.eventstore.errors import StoreFullError
from ledgerflow.machines import AgentContext, Orchestrator, RunBusyError, Workflow
from ledgerflow.machines.leasing import lease_owner_is_gone

HOST = socket.gethostname()
CHILD = Path(lease_child.__file__)


def _search_workflow() -> Workflow:
    wf = workflow([SEARCH])

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> SearchOut:
        return SearchOut(price=10.0)

    return wf


class _FullDisk:
    """A real store whose appends fail as a full disk fails them, and whose first
    release fails too (a full disk refuses every write for a while)."""

    def __init__(self, inner: EventStore, *, ok_appends: int) -> None:
        self.inner = inner
        self.ok_appends = ok_appends
        self.failed_releases = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, run_id: str, events: Sequence[NewEvent], expected_seq: int,
                     **kwargs: Any) -> Any:
        if self.ok_appends <= 0:
            raise StoreFullError(str(getattr(self.inner, "path", "?")), run_id)
        self.ok_appends -= 1
        return await self.inner.append(run_id, events, expected_seq, **kwargs)

    async def release_lease(self, run_id: str, owner: str) -> None:
        if self.failed_releases == 0:
            self.failed_releases += 1
            raise StoreFullError(str(getattr(self.inner, "path", "?")), run_id)
        await self.inner.release_lease(run_id, owner)


async def test_lease_is_released_after_a_store_error_so_resume_is_not_refused(
    store: EventStore,
) -> None:
    wf = _search_workflow()
    full = _FullDisk(store, ok_appends=1)
    with pytest.raises(StoreFullError):
        await Orchestrator(full, durable_dispatch=True).start(
            wf, Goal(), run_id="r1")
    assert full.failed_releases == 1

    # Another orchestrator (a CLI process would be another owner too) at once:
    run = await Orchestrator(store).resume("r1", wf)

    assert run.status == "completed"


def _spawn_child(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    marker = tmp_path / "agent-started"
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(tmp_path / "runs.db"), str(marker), "r1"],
        cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert child.poll() is None, "the child exited before its agent started"
        assert time.monotonic() < deadline, "the child's agent never started"
        time.sleep(0.02)
    return child, marker


async def test_resume_right_after_kill_9_takes_over_a_dead_owners_lease(
    tmp_path: Path, store: EventStore,
) -> None:
    child, _ = _spawn_child(tmp_path)
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL

    # The dead child's 30 s lease is still in the store; it is not waited for.
    run = await Orchestrator(store, lease_wait_s=0).resume("r1", lease_child.wf)

    assert run.status == "completed"


async def test_lease_of_a_live_process_on_this_host_is_respected(
    tmp_path: Path, store: EventStore,
) -> None:
    child, _ = _spawn_child(tmp_path)
    try:
        with pytest.raises(RunBusyError) as caught:
            await Orchestrator(store).resume("r1", lease_child.wf)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    busy = caught.value
    assert busy.owner is not None
    assert busy.owner.startswith(f"{HOST}:{child.pid}:")


async def test_busy_error_says_who_holds_the_lease_and_for_how_long(store: EventStore) -> None:
    await Orchestrator(store).start(_search_workflow(), Goal(), run_id="r1")
    assert await store.try_lease("r1", "elsewhere:4242:0123abcd", 30.0)

    with pytest.raises(RunBusyError, match="another live process") as caught:
        await Orchestrator(store).resume("r1", _search_workflow())

    busy = caught.value
    assert busy.run_id == "r1"
    assert busy.owner == "elsewhere:4242:0123abcd"
    assert busy.expires_in_s is not None
    assert 0 < busy.expires_in_s <= 30
    assert "--wait" in str(busy)
    assert "\n" not in str(busy)


async def test_resume_with_lease_wait_waits_for_the_lease_to_lapse(store: EventStore) -> None:
    await Orchestrator(store).start(_search_workflow(), Goal(), run_id="r1")
    assert await store.try_lease("r1", "elsewhere:4242:0123abcd", 0.3)

    run = await Orchestrator(store, lease_wait_s=30).resume("r1", _search_workflow())

    assert run.status == "completed"


async def test_lease_left_by_an_orchestrator_of_this_process_is_taken_over(
    store: EventStore,
) -> None:
    """Its owner names this pid, but no driver here holds the run: nobody drives it."""
    await Orchestrator(store).start(_search_workflow(), Goal(), run_id="r1")
    assert await store.try_lease("r1", f"{HOST}:{os.getpid()}:0123abcd", 30.0)

    run = await Orchestrator(store).resume("r1", _search_workflow())

    assert run.status == "completed"


@pytest.mark.parametrize(("owner", "gone"), [
    ("worker-7", False),                            # hand-chosen: never judged
    ("elsewhere:1:0123abcd", False),                # another host: a pid means nothing here
    (f"{HOST}:1:0123abcd", False),                  # init is alive
    (f"{HOST}:0:0123abcd", False),                  # pid 0 would signal our process group
    (f"{HOST}:{os.getpid()}:nothex!!", False),      # not the form ledgerflow generates
    (f"{HOST}:{os.getpid()}:0123abcd", True),       # this process, and no driver holds it
], ids=["hand-chosen", "other host", "live pid", "pid 0", "odd suffix", "this process"])
def test_lease_owner_is_gone_only_when_certain(owner: str, gone: bool) -> None:
    assert lease_owner_is_gone(owner, "r1") is gone


def test_lease_owner_of_a_dead_pid_on_this_host_is_gone() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(done.stdout)
    assert lease_owner_is_gone(f"{HOST}:{pid}:0123abcd", "r1")


async def test_store_error_on_a_real_full_sqlite_file_releases_the_lease(tmp_path: Path) -> None:
    """PRAGMA max_page_count on the store's own writer: the append hits a real SQLITE_FULL."""
    wf = workflow([SEARCH])

    @wf.agent(input=SearchIn, output=SearchOut, name="search")
    async def search(inp: SearchIn, ctx: AgentContext) -> dict[str, Any]:
        return {"price": 10.0, "confidence": 1.0, "pad": "x" * 400_000}

    async with open_store(tmp_path / "full.db") as store:
        writer = getattr(store, "_writer", None)
        if writer is None:
            pytest.skip("this store keeps no aiosqlite writer to limit")
        pages = (await (await writer.execute("PRAGMA page_count")).fetchone())[0]
        await writer.execute(f"PRAGMA max_page_count = {pages + 40}")
        with pytest.raises(StoreFullError):
            await Orchestrator(store).start(wf, Goal(), run_id="r1")
    async with open_store(tmp_path / "full.db") as store:
        assert await store.lease_of("r1") is None  # released (expired, its fence kept)
