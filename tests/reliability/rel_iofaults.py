"""Real I/O faults for issue 12, scenario 2: a full tmpfs, an ext4 gone read-only, a revoked role.

- :func:`small_tmpfs`: a ``size=2m`` tmpfs mounted on a folder (the sandbox
  runs as root); a filler file takes most of it, so deleting the filler is
  "space is back".
- :func:`ext4_image`: an 8 MB ext4 image loop-mounted with
  ``errors=remount-ro``; :func:`break_ext4` makes the kernel remount it
  read-only as it does on a disk error (``/sys/fs/ext4/<dev>/trigger_fs_error``).
  A tmpfs cannot be used for this: ``mount -o remount,ro`` is refused
  ("mount point is busy") while a SQLite connection holds the file open for
  writing, which it always does. Writes are allowed again the way an admin
  would: close, unmount, ``e2fsck``, mount.
- the workflow ``io_wf``: ``goal.tasks`` agents that echo a padding string
  (so the log grows fast) and call :data:`on_call` first (a test's hook, to
  break the disk in the middle of a run).

Example::

    with small_tmpfs(tmp_path / "fs") as fs:
        ...  # a store in fs, a filler, runs until StoreFullError
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from ledgerflow.contracts import Plan, Task
from ledgerflow.machines import AgentContext, RetryPolicy, Workflow

__all__ = ["IoGoal", "break_ext4", "ext4_image", "io_wf", "on_call", "remount_ext4",
           "small_tmpfs"]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` on ``where``; skips the test if this sandbox cannot mount one."""
    where.mkdir(parents=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the full-disk "
                    "contract tests (tests/eventstore, max_page_count) still run")
    try:
        yield where
    finally:
        _run("umount", "-l", str(where))


class Ext4:
    """A loop-mounted ext4 image, and the loop device the kernel gave it."""

    def __init__(self, image: Path, mountpoint: Path) -> None:
        self.image = image
        self.mountpoint = mountpoint
        self.device = ""

    def mount(self) -> None:
        done = _run("mount", "-o", "loop,errors=remount-ro", str(self.image),
                    str(self.mountpoint))
        if done.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image here ({done.stderr.strip()})")
        found = _run("losetup", "-j", str(self.image)).stdout.split(":", 1)[0]
        self.device = found.rsplit("/", 1)[-1]

    def umount(self) -> None:
        done = _run("umount", str(self.mountpoint))
        assert done.returncode == 0, f"umount {self.mountpoint}: {done.stderr.strip()}"


@contextlib.contextmanager
def ext4_image(base: Path) -> Iterator[Ext4]:
    """An 8 MB ext4 image mounted on ``base / "ext4"``; skips if the sandbox cannot."""
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None:
        pytest.skip("needs mkfs.ext4 and losetup to build a file system that can go read-only")
    image, mountpoint = base / "ext4.img", base / "ext4"
    mountpoint.mkdir(parents=True)
    with image.open("wb") as f:
        f.truncate(8 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", str(image))
    assert made.returncode == 0, made.stderr
    fs = Ext4(image, mountpoint)
    fs.mount()
    try:
        yield fs
    finally:
        _run("umount", "-l", str(mountpoint))


def break_ext4(fs: Ext4) -> None:
    """The kernel's own reaction to a disk error: the file system is now read-only."""
    trigger = Path(f"/sys/fs/ext4/{fs.device}/trigger_fs_error")
    if not trigger.exists():
        pytest.skip(f"{trigger} is missing: this kernel cannot force an ext4 error")
    trigger.write_text("reliability test: the disk went read-only\n")


def remount_ext4(fs: Ext4) -> None:
    """What an admin does once the disk is fine: unmount, check, mount read-write again."""
    fs.umount()
    checked = _run("e2fsck", "-fy", str(fs.image))
    assert checked.returncode in (0, 1), checked.stdout + checked.stderr  # 1: errors fixed
    fs.mount()


class IoGoal(BaseModel):
    pad: str
    tasks: int = 4


class Echo(BaseModel):
    pad: str


#: Awaited at the start of every agent call, with the call's (run id, task id).
on_call: list[Callable[[str, str], Awaitable[None]]] = []

io_wf = Workflow("reliability-io", goal=IoGoal, max_concurrency=4)


@io_wf.planner
async def io_planner(goal: IoGoal, ctx: AgentContext) -> Plan:
    return Plan(tasks=[Task(id=f"t{i}", agent="echo", inputs={"pad": "$goal.pad"},
                            needs=[f"t{i - 1}"] if i else [])
                       for i in range(goal.tasks)])


@io_wf.agent(input=Echo, output=Echo, name="echo",
             retry=RetryPolicy(max_attempts=2, backoff_s=0.0, jitter=0.0))
async def echo(inp: Echo, ctx: AgentContext) -> Echo:
    for hook in on_call:
        await hook(ctx.run_id, ctx.task_id)
    return Echo(pad=inp.pad)
