"""What the reading commands print: tables that fit an 80-column terminal
without cutting run ids or reasons, JSON documents with stable keys, and
exports that carry the data (csv) and the hash chain (jsonl)."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime

import msgspec
import pytest
from click.testing import CliRunner

from ledgerflow.eventstore import chain_hash
from ledgerflow.replay.cli import main
from ledgerflow.replay.documents import RUN_KEYS, SHOW_KEYS, TASK_KEYS


def cli(*args: str, columns: int = 200) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"COLUMNS": str(columns)},
                                catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    db = str(tmp_path_factory.mktemp("out") / "ledgerflow.db")
    code, out = cli("demo", "--db", db)
    assert code == 0, out
    run_id = next(ln for ln in out.splitlines() if ln.startswith("run ")).split()[1].rstrip(":")
    return db, run_id


def column_text(lines: list[str], header: str, name: str) -> str:
    """The text of one table column, wrapped lines joined: cut at the header's offset."""
    start = header.index(name)
    return " ".join(" ".join(line[start:].split()) for line in lines if len(line) > start)


def table_after(out: str, title: str | None = None) -> tuple[str, list[str]]:
    lines = out.splitlines()
    if title is not None:
        lines = lines[lines.index(next(ln for ln in lines if ln.strip() == title)) + 1:]
    header_at = next(i for i, ln in enumerate(lines) if re.match(r"^\s*(seq|run)\s", ln))
    rows = lines[header_at + 2:]
    end = next((i for i, ln in enumerate(rows) if not ln.strip()), len(rows))
    return lines[header_at], rows[:end]


def test_runs_at_80_columns_keeps_full_ids_and_the_whole_reason(demo: tuple[str, str]) -> None:
    db, run_id = demo
    _, listed = cli("runs", "--json", "--db", db)
    reason = json.loads(listed)["runs"][0]["reason"]
    code, out = cli("runs", "--db", db, columns=80)
    assert code == 0
    assert all(len(line) <= 80 for line in out.splitlines()), out
    assert run_id in out
    header, rows = table_after(out)
    assert " ".join(reason.split()) in column_text(rows, header, "reason")


@pytest.mark.parametrize("command", ["log", "show"])
def test_the_decision_log_at_80_columns_wraps_every_reason_whole(
    demo: tuple[str, str], command: str
) -> None:
    db, run_id = demo
    _, jsonl = cli("log", run_id, "--format", "jsonl", "--db", db)
    reasons = [json.loads(line)["reason"] for line in jsonl.splitlines()]
    longest = max(reasons, key=len)
    assert len(longest) > 80, "the demo has a reason longer than the terminal"
    code, out = cli(command, run_id[:5], "--db", db, columns=80)
    assert code == 0, out
    assert all(len(line) <= 80 for line in out.splitlines()), out
    if command == "show":
        assert f"run {run_id} " in out
    header, rows = table_after(out, "timeline" if command == "show" else None)
    text = column_text(rows, header, "reason")
    for reason in reasons:
        assert " ".join(reason.split()) in text


def test_runs_json_has_the_documented_keys(demo: tuple[str, str]) -> None:
    db, run_id = demo
    code, out = cli("runs", "--json", "--db", db)
    assert code == 0
    doc = json.loads(out)
    assert list(doc) == ["runs"]
    (run,) = doc["runs"]
    assert tuple(run) == RUN_KEYS
    assert run["run_id"] == run_id
    assert run["status"] == "completed"
    assert run["events"] == 36
    datetime.fromisoformat(run["updated_at"])
    for key in RUN_KEYS:
        assert f'"{key}"' in cli("runs", "--help")[1]


def test_runs_json_with_no_runs_is_an_empty_list(demo: tuple[str, str]) -> None:
    db, _ = demo
    code, out = cli("runs", "--json", "--status", "failed", "--db", db)
    assert code == 0
    assert json.loads(out) == {"runs": []}


def test_show_json_has_the_documented_keys(demo: tuple[str, str]) -> None:
    db, run_id = demo
    code, out = cli("show", run_id[:4], "--json", "--db", db)
    assert code == 0
    doc = json.loads(out)
    assert tuple(doc) == SHOW_KEYS
    assert doc["run_id"] == run_id
    assert doc["status"] == "completed"
    assert [t["id"] for t in doc["tasks"]] == ["flights", "hotels", "price", "book"]
    assert all(tuple(t) == TASK_KEYS for t in doc["tasks"])
    assert doc["tasks"][3]["idempotency_key"]
    help_text = " ".join(cli("show", "--help")[1].split())
    for key in (*SHOW_KEYS, *TASK_KEYS):
        assert f'"{key}"' in help_text


def test_log_csv_carries_each_events_data(demo: tuple[str, str]) -> None:
    db, run_id = demo
    _, jsonl = cli("log", run_id, "--format", "jsonl", "--db", db)
    _, text = cli("log", run_id, "--format", "csv", "--db", db)
    rows = list(csv.DictReader(io.StringIO(text)))
    docs = [json.loads(line) for line in jsonl.splitlines()]
    assert len(rows) == len(docs) == 36
    for row, doc in zip(rows, docs, strict=True):
        assert int(row["seq"]) == doc["seq"]
        assert json.loads(row["data"]) == doc["data"]
        assert row["hash"] == doc["hash"]
    dispatched = [json.loads(r["data"]) for r in rows if r["type"] == "TaskDispatched"]
    assert all(d["idempotency_key"] and "input" in d for d in dispatched)


def test_log_jsonl_carries_the_hash_chain_an_auditor_can_recheck(demo: tuple[str, str]) -> None:
    db, run_id = demo
    _, jsonl = cli("log", run_id, "--format", "jsonl", "--db", db)
    prev = "0" * 64
    for line in jsonl.splitlines():
        doc = json.loads(line)
        assert {"seq", "type", "at", "data", "prev_hash", "hash"} <= set(doc)
        assert doc["prev_hash"] == prev
        # The data is embedded verbatim, so it re-encodes to the bytes the hash covers.
        data = msgspec.json.encode(doc["data"])
        at = datetime.fromisoformat(doc["at"])
        assert chain_hash(prev, run_id, doc["seq"], doc["type"], at, data) == doc["hash"]
        prev = doc["hash"]


def test_a_wide_terminal_gets_one_column_per_field(demo: tuple[str, str]) -> None:
    db, run_id = demo
    _, out = cli("log", run_id, "--db", db, columns=200)
    header = out.splitlines()[0]
    assert header.split() == ["seq", "time", "event", "machine", "move", "reason"]


def test_piped_output_without_columns_is_wide(demo: tuple[str, str]) -> None:
    db, run_id = demo
    result = CliRunner().invoke(main, ["log", run_id, "--db", db], env={"COLUMNS": ""})
    assert result.output.splitlines()[0].split()[-3:] == ["machine", "move", "reason"]
