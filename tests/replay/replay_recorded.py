"""Recorded logs beside the tests: write one from a real run, load one into a store.

Regenerate the travel demo's recording (only on purpose: a changed recording
means the log format or the decisions changed) with::

    python tests/replay/replay_recorded.py
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
LOGS = HERE / "logs"
DEMO_LOG = LOGS / "travel_demo.jsonl"
DEMO_STATE = LOGS / "travel_demo.state.json"
DEMO_RUN = "recorded-demo"


def envelope_rows(db: Path, run_id: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT run_id, seq, type, at, data, prev_hash, hash FROM events "
            "WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    finally:
        conn.close()
    keys = ("run_id", "seq", "type", "at", "data", "prev_hash", "hash")
    return [dict(zip(keys, row, strict=True)) for row in rows]


async def load_recording(db: Path, rows: list[dict[str, Any]], *, status: str) -> None:
    """Put recorded envelopes into a fresh store exactly as they were written."""
    from ledgerflow.eventstore import open_store  # noqa: PLC0415 - keep this module importable as a script

    async with open_store(db):
        pass  # creates the schema
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO events (run_id, seq, type, at, data, prev_hash, hash) "
                "VALUES (:run_id, :seq, :type, :at, :data, :prev_hash, :hash)", rows)
            run_id = rows[0]["run_id"]
            conn.execute(
                "INSERT INTO runs (run_id, status, label, created_at, updated_at, last_seq) "
                "VALUES (?, ?, 'travel', ?, ?, ?)",
                (run_id, status, rows[0]["at"], rows[-1]["at"], rows[-1]["seq"]))
    finally:
        conn.close()


async def record_demo(folder: Path) -> None:
    from ledgerflow.eventstore import open_store  # noqa: PLC0415
    from ledgerflow.examples.travel import TripGoal, wf  # noqa: PLC0415
    from ledgerflow.machines import Orchestrator, load_run_state  # noqa: PLC0415

    db = folder / "record.db"
    fixed = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    async with open_store(db) as store:
        run = await Orchestrator(store, clock=lambda: fixed).start(
            wf, TripGoal(destination="Lisbon", passengers=2), run_id=DEMO_RUN)
        assert run.status == "completed", run.reason
        state = await load_run_state(store, DEMO_RUN)
    LOGS.mkdir(exist_ok=True)
    with DEMO_LOG.open("w") as f:
        for row in envelope_rows(db, DEMO_RUN):
            f.write(json.dumps(row, sort_keys=True) + "\n")
    DEMO_STATE.write_text(json.dumps(state.to_dict(), indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(HERE.parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(record_demo(Path(tmp)))
    print(f"wrote {DEMO_LOG} and {DEMO_STATE}")
