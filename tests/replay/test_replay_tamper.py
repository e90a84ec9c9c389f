"""Issue 12 scenario 5, tampering: an anchored head, a keyed (or signed) anchor, appends that
refuse a broken chain, and a few hundred random tamperings found 100% of the time once the
head is anchored or the anchor keyed (``tamper_trials``; the benchmark runs thousands)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
import tamper_trials
from click.testing import CliRunner

from ledgerflow.eventstore import GENESIS_HASH, Envelope, chain_hash, open_store
from ledgerflow.eventstore.chain_keys import KEY_ENV, ChainKeyError, load_chain_key
from ledgerflow.eventstore.envelope import parse_at
from ledgerflow.examples import travel, travel_unreviewed
from ledgerflow.machines import Orchestrator, Worker
from ledgerflow.machines.errors import ChainBrokenError
from ledgerflow.replay.anchors import Anchor, AnchorFormatError, AnchorKeys, head_anchor
from ledgerflow.replay.cli import main
from ledgerflow.replay.verify import VerifyReport, verify_run

GOAL = travel.TripGoal(destination="Lisbon", passengers=2)
PG_DSN = os.environ.get("LEDGERFLOW_TEST_PG_DSN", "")
needs_pg = pytest.mark.skipif(not PG_DSN, reason="needs LEDGERFLOW_TEST_PG_DSN")


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    return result.exit_code, result.output


def demo_run(db: Path, workflow: object = travel.wf) -> str:
    async def go() -> str:
        async with open_store(db) as store:
            run = await Orchestrator(store).start(workflow, GOAL)  # type: ignore[arg-type]
            return run.run_id

    return asyncio.run(go())


def edit_and_rechain(db: Path, run_id: str, seq: int, old: str, new: str) -> None:
    """The attacker's best move: edit one row, recompute the chain after it, fix runs."""
    conn = sqlite3.connect(db)
    with conn:
        rows = [list(r) for r in conn.execute(
            "SELECT seq, type, at, data, prev_hash, hash FROM events WHERE run_id = ? "
            "ORDER BY seq", (run_id,))]
        assert old in rows[seq - 1][3]
        rows[seq - 1][3] = rows[seq - 1][3].replace(old, new)
        prev = rows[seq - 2][5] if seq > 1 else GENESIS_HASH
        for row in rows[seq - 1:]:
            env = Envelope(run_id, row[0], row[1], _at(row[2]), row[3].encode(), prev, "")
            row[4], row[5] = prev, chain_hash(prev, run_id, env.seq, env.type, env.at, env.data)
            prev = row[5]
            conn.execute("UPDATE events SET data = ?, prev_hash = ?, hash = ? WHERE run_id = ? "
                         "AND seq = ?", (row[3], row[4], row[5], run_id, row[0]))
    conn.close()


def _at(text: str) -> datetime:
    return parse_at(text)


def truncate(db: Path, run_id: str, keep: int) -> None:
    """Delete the tail after ``keep`` and edit the runs row to match."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DELETE FROM events WHERE run_id = ? AND seq > ?", (run_id, keep))
        conn.execute("UPDATE runs SET last_seq = ? WHERE run_id = ?", (keep, run_id))
    conn.close()


def flip_data(db: Path, run_id: str, seq: int) -> None:
    """A naive edit: one event's data changed, its hash left."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE events SET data = replace(data, 'a', 'b') WHERE run_id = ? AND "
                     "seq = ?", (run_id, seq))
    conn.close()


def rows_of(db: Path, run_id: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.execute("SELECT * FROM events WHERE run_id = ? ORDER BY seq",
                                 (run_id,)))
    finally:
        conn.close()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "chain.key"
    path.write_bytes(os.urandom(32))
    return path


# -- 1. the anchored head ---------------------------------------------------------


def test_log_head_prints_seq_and_hash_alone_and_verify_head_passes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    code, out = cli("log", rid[:6], "--head", "--db", str(db))
    assert code == 0, out
    assert out.count("\n") == 1
    seq, hash_ = out.strip().split(":")
    assert int(seq) == len(rows_of(db, rid))
    assert hash_ == rows_of(db, rid)[-1][-1]
    code, out = cli("verify", rid, "--head", out.strip(), "--db", str(db))
    assert code == 0, out
    assert "PASS  anchor: the log holds the anchored head" in out
    assert out.splitlines()[-1] == "4 checks passed"


def test_verify_head_finds_a_rewrite_that_plain_verify_passes(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    _, head = cli("log", rid, "--head", "--db", str(db))
    # The escalation's reason, edited, and every hash after it recomputed.
    seq = next(r[1] for r in rows_of(db, rid) if r[2] == "EscalationResolved")
    assert isinstance(seq, int)
    edit_and_rechain(db, rid, seq, "reviewer", "revieweR")
    code, out = cli("verify", rid, "--db", str(db))
    assert code == 0, out  # the chain holds: it was recomputed
    code, out = cli("verify", rid, "--head", head.strip(), "--db", str(db))
    assert code == 1, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("FAIL  anchor:")]
    assert "the log does not hold the anchored head" in line
    assert f"the hash at seq {head.split(':')[0]} is" in line
    assert "rewritten" in line


def test_verify_head_finds_a_truncation_with_the_runs_row_edited(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db, travel_unreviewed.wf)  # a waiting run: no workflow needed to hide it
    _, head = cli("log", rid, "--head", "--db", str(db))
    last = int(head.split(":")[0])
    truncate(db, rid, last - 3)
    report = asyncio.run(_verify(db, rid))
    assert report.ok, report.lines()  # without the anchor the shorter log passes
    code, out = cli("verify", rid, "--head", head.strip(), "--db", str(db))
    assert code == 1, out
    assert (f"it holds no event seq {last} (it ends at seq {last - 3}), so it was truncated "
            "below the anchored head") in out


async def _verify(db: Path, rid: str) -> VerifyReport:
    async with open_store(db, create=False, read_only=True) as store:
        return await verify_run(store, rid)


def test_verify_run_takes_a_head_tuple(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)

    async def go() -> None:
        async with open_store(db, create=False, read_only=True) as store:
            anchor = await head_anchor(store, rid)
            report = await verify_run(store, rid, head=(anchor.seq, anchor.hash))
            assert report.ok, report.lines()
            assert [c.name for c in report.checks][-1] == "anchor"
            wrong = await verify_run(store, rid, head=(anchor.seq, "f" * 64))
            assert not wrong.ok
            assert wrong.checks[-1].seq == anchor.seq

    asyncio.run(go())


def test_a_head_that_is_not_seq_hash_is_a_usage_error(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    for bad in ("3:abc", "0:" + "a" * 64, "x", "3:" + "a" * 64 + ":zz"):
        code, out = cli("verify", rid, "--head", bad, "--db", str(db))
        assert code == 2, (bad, out)
        assert "is not an anchor: expected SEQ:HASH" in out
        assert len(out.strip().splitlines()) == 1
    with pytest.raises(AnchorFormatError):
        Anchor.parse("12")
    code, out = cli("log", rid, "--head", "--follow", "--db", str(db))
    assert code == 2
    assert "cannot be used with --follow" in out
    code, out = cli("verify", rid, "--key-file", "k", "--db", str(db))
    assert code == 2
    assert "give --head too" in out


# -- 2. the keyed anchor ----------------------------------------------------------


def test_a_keyed_head_checks_with_the_key_and_fails_with_another(
    tmp_path: Path, key_file: Path,
) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    code, sealed = cli("log", rid, "--head", "--key-file", str(key_file), "--db", str(db))
    assert code == 0, sealed
    seq, hash_, mac = sealed.strip().split(":")
    assert len(mac) == 64
    code, out = cli("verify", rid, "--head", sealed.strip(), "--key-file", str(key_file),
                    "--db", str(db))
    assert code == 0, out
    assert "its MAC matches the key" in out
    # The key from the environment, as for log.
    code, out = cli("verify", rid, "--head", sealed.strip(), "--db", str(db),
                    env={KEY_ENV: str(key_file)})
    assert code == 0, out
    other = tmp_path / "other.key"
    other.write_bytes(os.urandom(32))
    code, out = cli("verify", rid, "--head", sealed.strip(), "--key-file", str(other),
                    "--db", str(db))
    assert code == 1
    assert "the anchor cannot be trusted: its MAC does not match under the key given" in out
    # Without a key the MAC cannot be checked: not a pass.
    code, out = cli("verify", rid, "--head", sealed.strip(), "--db", str(db))
    assert code == 1
    assert "no key was given to check it" in out
    # With a key, an anchor stripped of its MAC is not a pass either.
    code, out = cli("verify", rid, "--head", f"{seq}:{hash_}", "--key-file", str(key_file),
                    "--db", str(db))
    assert code == 1
    assert "the anchor carries no seal" in out


def test_a_rewritten_log_with_a_rewritten_keyed_anchor_fails_without_the_key(
    tmp_path: Path, key_file: Path,
) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    seq = next(r[1] for r in rows_of(db, rid) if r[2] == "EscalationResolved")
    assert isinstance(seq, int)
    edit_and_rechain(db, rid, seq, "reviewer", "revieweR")
    attacker = tmp_path / "attacker.key"
    attacker.write_bytes(os.urandom(32))
    _, forged = cli("log", rid, "--head", "--key-file", str(attacker), "--db", str(db))
    code, out = cli("verify", rid, "--head", forged.strip(), "--db", str(db),
                    "--key-file", str(key_file))
    assert code == 1, out
    assert "its MAC does not match" in out
    # An unkeyed anchor the attacker could rewrite the same way proves nothing: say so.
    _, plain = cli("log", rid, "--head", "--db", str(db))
    assert cli("verify", rid, "--head", plain.strip(), "--db", str(db))[0] == 0


def test_a_key_file_too_short_or_missing_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    short = tmp_path / "short.key"
    short.write_text("secret\n")
    code, out = cli("log", rid, "--head", "--key-file", str(short), "--db", str(db))
    assert code == 1
    assert out.strip() == (f"Error: Cannot use the key file '{short}': it holds 6 bytes, "
                           "fewer than the 16 a key needs (head -c 32 /dev/urandom > FILE).")
    code, out = cli("log", rid, "--head", "--key-file", str(tmp_path / "nope"), "--db",
                    str(db))
    assert code == 1
    assert "No such file or directory" in out
    with pytest.raises(ChainKeyError):
        load_chain_key(short)
    (tmp_path / "text.key").write_text("a long enough passphrase\n")
    assert load_chain_key(tmp_path / "text.key") == b"a long enough passphrase"


def test_an_ed25519_signed_head(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )

    def pair(name: str) -> tuple[Path, Path]:
        key = Ed25519PrivateKey.generate()
        private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return private, public

    sign, check = pair("ours")
    _, theirs = pair("theirs")
    db = tmp_path / "runs.db"
    rid = demo_run(db)
    code, signed = cli("log", rid, "--head", "--sign-key", str(sign), "--db", str(db))
    assert code == 0, signed
    assert len(signed.strip().split(":")[2]) == 128
    code, out = cli("verify", rid, "--head", signed.strip(), "--verify-key", str(check),
                    "--db", str(db))
    assert code == 0, out
    assert "its signature matches the key" in out
    code, out = cli("verify", rid, "--head", signed.strip(), "--verify-key", str(theirs),
                    "--db", str(db))
    assert code == 1
    assert "its signature does not match" in out
    code, out = cli("verify", rid, "--head", signed.strip(), "--verify-key", str(sign),
                    "--db", str(db))
    assert code == 1
    assert "not a PEM public key" in out


# -- 3. appending refuses a broken chain ------------------------------------------------


def test_resume_refuses_a_broken_chain_in_one_line_and_appends_nothing(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db, travel_unreviewed.wf)
    flip_data(db, rid, 4)
    before = rows_of(db, rid)
    code, out = cli("resume", rid, "--db", str(db))
    assert code == 1
    assert out.strip().splitlines()[-1].startswith(
        f"Error: Run '{rid}' has a broken hash chain at seq 4, so nothing was appended to it:")
    assert len([ln for ln in out.splitlines() if ln.startswith("Error")]) == 1
    assert rows_of(db, rid) == before


def test_resolve_and_cancel_refuse_a_broken_chain(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    rid = demo_run(db, travel_unreviewed.wf)
    truncate(db, rid, 5)
    conn = sqlite3.connect(db)
    with conn:  # the tail is gone but the runs row still counts it: a gap at 6
        conn.execute("UPDATE runs SET last_seq = last_seq + 3 WHERE run_id = ?", (rid,))
    conn.close()
    before = rows_of(db, rid)

    async def go() -> None:
        async with open_store(db, create=False) as store:
            orch = Orchestrator(store)
            with pytest.raises(ChainBrokenError) as caught:
                await orch.resolve(rid, "price", retry=True, workflow=travel_unreviewed.wf)
            assert (caught.value.run_id, caught.value.seq) == (rid, 6)
            assert "the runs table records 8 events but the log holds 5" in str(caught.value)
            with pytest.raises(ChainBrokenError):
                await orch.cancel(rid)

    asyncio.run(go())
    assert rows_of(db, rid) == before
    code, out = cli("resolve", rid, "price", "--retry", "--db", str(db))
    assert code == 1
    assert "has a broken hash chain at seq 6" in out


def test_a_worker_leaves_a_run_with_a_broken_chain_and_does_not_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    db = tmp_path / "runs.db"

    async def go() -> tuple[str, str, object]:
        async with open_store(db) as store:
            orch = Orchestrator(store)
            broken = await orch.submit(travel.wf, GOAL)
            flip_data(db, broken, 1)
            fine = await orch.submit(travel.wf, GOAL)
            worker = Worker(store, [travel.wf], poll_s=0.05, drain_s=1)
            stats = await asyncio.wait_for(worker.run(until_idle=True), 30)
            return broken, fine, stats

    with caplog.at_level(logging.INFO, logger="ledgerflow"):
        broken, fine, stats = asyncio.run(go())
    assert len(rows_of(db, broken)) == 1  # RunSubmitted, nothing chained onto it
    assert [r for r in caplog.records if "broken hash chain" in r.getMessage()
            or (r.exc_info and isinstance(r.exc_info[1], ChainBrokenError))]
    # The run after it in the queue was still driven to its end.
    conn = sqlite3.connect(db)
    status = conn.execute("SELECT status FROM runs WHERE run_id = ?", (fine,)).fetchone()[0]
    conn.close()
    assert status == "completed", stats


@needs_pg
async def test_resume_refuses_a_broken_chain_on_postgres() -> None:
    import asyncpg  # noqa: PLC0415 - only this test needs it

    schema = f"rlt_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in PG_DSN else "?"
    url = f"{PG_DSN}{sep}schema={schema}"
    conn = await asyncpg.connect(PG_DSN)
    try:
        async with open_store(url) as store:
            run = await Orchestrator(store).start(travel_unreviewed.wf, GOAL)
            before = await store.read_all(run.run_id)
            await conn.execute(
                f'UPDATE "{schema}".events SET data = replace(data::text, \'a\', \'b\')::json '
                "WHERE run_id = $1 AND seq = 3", run.run_id)
            with pytest.raises(ChainBrokenError) as caught:
                await Orchestrator(store).resume(run.run_id, travel_unreviewed.wf)
            assert caught.value.seq == 3
            assert len(await store.read_all(run.run_id)) == len(before)
            anchor = await head_anchor(store, run.run_id, keys=AnchorKeys(mac_key=b"k" * 16))
            report = await verify_run(store, run.run_id, head=anchor,
                                      keys=AnchorKeys(mac_key=b"k" * 16))
            failed = [c.name for c in report.checks if not c.ok]
            assert failed[0] == "chain"
            assert failed[-1] == "anchor"
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


# -- 4. random trials -------------------------------------------------------------------


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tamper_trials.Case]]:
    folder = tmp_path_factory.mktemp("tamper")
    return folder, tamper_trials.build_cases(folder, generated=3)


def test_a_few_hundred_random_tamperings_are_all_found_with_an_anchor(
    cases: tuple[Path, list[tamper_trials.Case]],
) -> None:
    folder, built = cases
    started = time.perf_counter()
    tally = tamper_trials.run_trials(built, folder, 330, seed=12)
    assert time.perf_counter() - started < 30
    print("\n" + tamper_trials.table(tally))
    assert tally.crashes == []
    trials = sum(tally.trials.values())
    assert trials == 330
    assert tally.total("head") == (trials, trials)
    assert tally.total("keyed") == (trials, trials)
    for (kind, recompute), n in tally.trials.items():
        if not recompute and kind != "truncated tail":
            # Naive edits: plain verify finds every one, and resume refuses every one.
            assert tally.found[(kind, False, "plain")] == n, kind
            assert tally.found[(kind, False, "refused")] == n, kind
    # What the chain alone cannot see, and why the anchor is needed (not 100%).
    assert tally.total("plain")[0] < trials
    assert tally.found[("truncated tail", False, "plain")] == 0


def test_the_benchmark_prints_the_table(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-m", "benchmarks.tamper_trials", "--trials", "44",
                          "--generated", "1", "--dir", str(tmp_path)],
                         cwd=root, capture_output=True, text=True, check=True, timeout=120).stdout
    assert "| tampering | trials | plain |" in out
    assert "| **all** | 44 |" in out
    assert json.loads(out.splitlines()[-1])["head"] == [44, 44]


def test_a_worker_of_concurrency_one_is_not_starved_by_a_broken_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"

    async def go() -> str:
        async with open_store(db) as store:
            orch = Orchestrator(store)
            broken = await orch.submit(travel.wf, GOAL)
            flip_data(db, broken, 1)
            fine = await orch.submit(travel.wf, GOAL)
            worker = Worker(store, [travel.wf], poll_s=0.05, drain_s=1, concurrency=1)
            serving = asyncio.create_task(worker.run())
            await asyncio.sleep(2)
            worker.stop()
            await serving
            summary = await store.run(fine)
            assert summary is not None
            return summary.status

    assert asyncio.run(go()) == "completed"
