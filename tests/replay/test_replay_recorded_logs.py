"""A log recorded by an earlier version replays to a pinned state under today's
code, and an altered copy fails verify: the guard against a change that would
silently reinterpret last month's runs."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.eventstore import GENESIS_HASH, chain_hash, open_store
from ledgerflow.examples import travel
from ledgerflow.machines import load_run_state
from ledgerflow.replay.verify import verify_run

sys.path.insert(0, str(Path(__file__).parent))
from replay_recorded import (
    DEMO_LOG,
    DEMO_RUN,
    DEMO_STATE,
    load_recording,
)


def recorded_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DEMO_LOG.read_text().splitlines()]


async def test_recorded_demo_log_verifies_under_the_current_code(tmp_path: Path) -> None:
    db = tmp_path / "recorded.db"
    await load_recording(db, recorded_rows(), status="completed")
    async with open_store(db) as store:
        report = await verify_run(store, DEMO_RUN, workflow=travel.wf)
    assert report.ok, report.lines()


async def test_recorded_demo_log_folds_to_the_pinned_state(tmp_path: Path) -> None:
    db = tmp_path / "recorded.db"
    await load_recording(db, recorded_rows(), status="completed")
    async with open_store(db) as store:
        state = await load_run_state(store, DEMO_RUN)
    pinned = json.loads(DEMO_STATE.read_text())
    assert json.loads(json.dumps(state.to_dict(), sort_keys=True)) == pinned


@pytest.mark.parametrize(
    ("seq", "old", "new", "failing_check"),
    [
        (34, '"amount_charged":836.0', '"amount_charged":936.0', "chain"),
        (27, '"kind":"low_confidence"', '"kind":"budget"', "chain"),
    ],
    ids=["booking-amount-edited", "escalation-kind-edited"],
)
async def test_an_altered_recording_fails_verify_at_its_seq(
    tmp_path: Path, seq: int, old: str, new: str, failing_check: str
) -> None:
    rows = recorded_rows()
    assert old in rows[seq - 1]["data"]
    rows[seq - 1]["data"] = rows[seq - 1]["data"].replace(old, new)
    db = tmp_path / "altered.db"
    await load_recording(db, rows, status="completed")
    async with open_store(db) as store:
        report = await verify_run(store, DEMO_RUN, workflow=travel.wf)
    failed = [c for c in report.checks if not c.ok]
    assert [c.name for c in failed][:1] == [failing_check]
    assert failed[0].seq == seq


def rehash_from(rows: list[dict[str, Any]], seq: int) -> None:
    """Recompute the chain from ``seq`` on, as a careful forger would."""
    prev = rows[seq - 2]["hash"] if seq > 1 else GENESIS_HASH
    for row in rows[seq - 1:]:
        row["prev_hash"] = prev
        row["hash"] = chain_hash(prev, row["run_id"], row["seq"], row["type"],
                                 datetime.fromisoformat(row["at"]), row["data"].encode())
        prev = row["hash"]


async def test_a_forged_decision_with_a_rehashed_chain_is_caught_by_determinism(
    tmp_path: Path,
) -> None:
    """The chain holds, every move is legal, but the current code never made that call."""
    rows = recorded_rows()
    escalated = rows[26]
    assert escalated["type"] == "TaskEscalated"
    escalated["data"] = escalated["data"].replace('"kind":"low_confidence"', '"kind":"budget"')
    rehash_from(rows, 27)
    db = tmp_path / "forged.db"
    await load_recording(db, rows, status="completed")
    async with open_store(db) as store:
        report = await verify_run(store, DEMO_RUN, workflow=travel.wf)
    chain, transitions, determinism = report.checks
    assert chain.ok
    assert transitions.ok
    assert not determinism.ok
    assert determinism.seq == 27
