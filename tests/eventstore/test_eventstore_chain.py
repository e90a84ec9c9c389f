"""chain_hash and check_chain: pure, and every alteration is caught at the right seq."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.eventstore import GENESIS_HASH, ChainProblem, Envelope, chain_hash, check_chain
from ledgerflow.eventstore.envelope import format_at, parse_at

T0 = datetime(2024, 5, 1, 12, 0, 0, 500, tzinfo=UTC)


def build(run_id: str, items: list[tuple[str, bytes]], at: datetime = T0) -> list[Envelope]:
    envs = []
    prev = GENESIS_HASH
    for seq, (type_, data) in enumerate(items, start=1):
        digest = chain_hash(prev, run_id, seq, type_, at, data)
        envs.append(Envelope(run_id, seq, type_, at, data, prev, digest))
        prev = digest
    return envs


FIVE = build("r1", [("E", b'{"i": %d}' % i) for i in range(5)])


def test_chain_hash_is_a_deterministic_hex_sha256() -> None:
    h = chain_hash(GENESIS_HASH, "r1", 1, "RunStarted", T0, b"{}")
    assert h == chain_hash(GENESIS_HASH, "r1", 1, "RunStarted", T0, b"{}")
    assert len(h) == 64
    assert int(h, 16) >= 0


def test_chain_hash_framing_is_unambiguous() -> None:
    a = chain_hash(GENESIS_HASH, "ab", 1, "c", T0, b"{}")
    b = chain_hash(GENESIS_HASH, "a", 1, "bc", T0, b"{}")
    c = chain_hash(GENESIS_HASH, "r", 11, "E", T0, b"{}")
    d = chain_hash(GENESIS_HASH, "r1", 1, "E", T0, b"{}")
    assert len({a, b, c, d}) == 4


def test_chain_hash_depends_on_the_instant_not_the_timezone() -> None:
    plus_two = T0.astimezone(__import__("datetime").timezone(timedelta(hours=2)))
    assert chain_hash(GENESIS_HASH, "r", 1, "E", T0, b"{}") == chain_hash(
        GENESIS_HASH, "r", 1, "E", plus_two, b"{}"
    )


def test_time_text_is_utc_with_microseconds_and_round_trips() -> None:
    assert format_at(T0) == "2024-05-01T12:00:00.000500+00:00"
    assert parse_at(format_at(T0)) == T0


def test_naive_time_cannot_be_hashed() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        format_at(datetime(2024, 1, 1))


def test_check_chain_accepts_an_intact_and_an_empty_log() -> None:
    assert check_chain("r1", FIVE) is None
    assert check_chain("r1", []) is None


def replace(env: Envelope, **changes: object) -> Envelope:
    fields = {f: getattr(env, f) for f in Envelope.__struct_fields__}
    fields.update(changes)
    return Envelope(**fields)


@pytest.mark.parametrize(
    ("envs", "problem"),
    [
        (FIVE[:2] + FIVE[3:], (3, "gap")),
        (FIVE[1:], (1, "gap")),
        (FIVE[:3] + FIVE[2:], (3, "duplicate")),
        ([*FIVE[:3], FIVE[1]], (2, "out_of_order")),
        ([FIVE[0], FIVE[2], FIVE[1]], (2, "gap")),
        ([*FIVE[:2], replace(FIVE[2], run_id="r2")], (3, "run_id")),
        ([*FIVE[:3], replace(FIVE[3], data=b'{"i": 7}')], (4, "hash")),
        ([FIVE[0], replace(FIVE[1], type="Forged")], (2, "hash")),
        ([replace(FIVE[0], at=T0 + timedelta(microseconds=1))], (1, "hash")),
        ([replace(FIVE[0], prev_hash="f" * 64)], (1, "prev_hash")),
        ([FIVE[0], FIVE[1], replace(FIVE[3], seq=3)], (3, "prev_hash")),
    ],
    ids=[
        "deleted",
        "first-missing",
        "duplicated",
        "went-back",
        "swapped",
        "foreign-run",
        "edited-data",
        "edited-type",
        "edited-time",
        "bad-genesis",
        "renumbered",
    ],
)
def test_check_chain_reports_the_first_problem_at_its_seq(
    envs: list[Envelope], problem: tuple[int, str]
) -> None:
    found = check_chain("r1", envs)
    assert isinstance(found, ChainProblem)
    assert (found.seq, found.kind) == problem
    assert f"seq {problem[0]}" in found.message
    assert found.message.endswith(".")


def test_hash_problem_message_says_what_was_altered() -> None:
    found = check_chain("r1", [*FIVE[:4], replace(FIVE[4], data=b"{}")])
    assert found is not None
    assert found.message == (
        "Event seq 5 of run 'r1' does not match its hash: its type, time or data was "
        "altered after it was written."
    )


json_bytes = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=4)
events = st.lists(
    st.tuples(st.text(min_size=1, max_size=12), json_bytes.map(lambda d: repr(d).encode())),
    min_size=1,
    max_size=6,
)


@given(events=events, data=st.data())
def test_any_single_byte_change_is_detected(
    events: list[tuple[str, bytes]], data: st.DataObject
) -> None:
    envs = build("run-x", events)
    assert check_chain("run-x", envs) is None
    index = data.draw(st.integers(0, len(envs) - 1), label="event")
    target = data.draw(st.sampled_from(["type", "data", "prev_hash", "hash"]), label="field")
    original = getattr(envs[index], target)
    raw = original.encode() if isinstance(original, str) else original
    position = data.draw(st.integers(0, len(raw)), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    if position == len(raw):
        changed = raw + bytes([flip])  # appending a byte is a change too
    else:
        changed = raw[:position] + bytes([raw[position] ^ flip]) + raw[position + 1 :]
    value: object = changed
    if isinstance(original, str):
        value = changed.decode("latin-1")
        if value == original:  # pragma: no cover - latin-1 of a non-ASCII char
            return
    envs[index] = replace(envs[index], **{target: value})
    problem = check_chain("run-x", envs)
    assert problem is not None
    assert problem.seq in {index + 1, index + 2}
