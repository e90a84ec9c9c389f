"""The replay package's public names are a promise: pinned here, sorted."""

from __future__ import annotations

from ledgerflow import LedgerflowError, replay

PUBLIC_API = [
    "Check", "Divergence", "ForkError", "LogDecodeError", "LogRow", "ReplayDivergenceError",
    "RunDiff", "Step", "TaskDifference", "VerifyReport", "check_determinism", "decision_log",
    "decode_log", "diff_runs", "fork_run", "verify_run", "walk",
]


def test_public_api_is_pinned_and_sorted() -> None:
    assert replay.__all__ == PUBLIC_API
    assert sorted(replay.__all__) == replay.__all__
    for name in replay.__all__:
        assert getattr(replay, name) is not None


def test_replay_errors_share_the_root() -> None:
    for error in (replay.ForkError, replay.LogDecodeError, replay.ReplayDivergenceError):
        assert issubclass(error, LedgerflowError)
