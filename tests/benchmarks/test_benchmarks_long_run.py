"""The long-run benchmark at a tiny size: it still runs, and counts what it says.

Never asserts on time; only on the events, the snapshots and what a load read.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import long_run  # noqa: E402
from benchmarks._common import fresh_db  # noqa: E402


async def test_long_run_resumes_from_a_snapshot_and_reads_only_the_tail(tmp_path: Path) -> None:
    without = await long_run.measure(fresh_db(str(tmp_path), "off.db"), 60, 0)
    with_snapshots = await long_run.measure(fresh_db(str(tmp_path), "on.db"), 60, 50)
    assert without["events"] == with_snapshots["events"] == 5 * 60 + 5
    assert without["snapshots"] == 0
    assert without["resume_read"] == without["events"]
    assert with_snapshots["snapshots"] >= 1
    assert with_snapshots["resume_read"] < with_snapshots["events"]
    assert with_snapshots["replay_read"] <= without["replay_read"]
    table = long_run.table([without, with_snapshots], 60)
    assert "| off |" in table
    assert "| 50 |" in table
