"""How a busy server's answer becomes a wait: Retry-After read in its three forms, a 429 with
no time backed off, every wait bounded by the policy and by the run's deadline."""

from __future__ import annotations

import email.utils

import pytest

from ledgerflow.llm import ModelRateLimitedError, ModelWaitPastDeadlineError, WaitPolicy
from ledgerflow.llm.openai_waits import planned_wait, retry_after_s
from ledgerflow.machines import PermanentError

NOW = 1_767_225_600.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"Retry-After": "0.05"}, 0.05),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": email.utils.formatdate(NOW + 30, usegmt=True)}, 30.0),
        ({"retry-after": email.utils.formatdate(NOW - 30, usegmt=True)}, 0.0),
        ({"retry-after": "-3"}, 0.0),
    ],
    ids=["seconds", "fraction", "milliseconds", "ms-preferred", "http-date", "date-past",
         "negative"],
)
def test_retry_after_is_read_in_each_form_a_server_sends(
    headers: dict[str, str], seconds: float
) -> None:
    assert retry_after_s(headers, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("headers", [{}, {"retry-after": "soon"}, {"retry-after-ms": "nan"}],
                         ids=["absent", "unreadable", "nan"])
def test_retry_after_that_names_no_time_is_none(headers: dict[str, str]) -> None:
    assert retry_after_s(headers, now=NOW) is None


def _plan(status: int, headers: dict[str, str], *, waits: list[dict[str, object]] | None = None,
          policy: WaitPolicy | None = None, time_left_s: float | None = None
          ) -> dict[str, object] | None:
    return planned_wait(model="gpt-test", status=status, headers=headers,
                        waits=list(waits or []), policy=policy or WaitPolicy(),
                        time_left_s=time_left_s, now=NOW)


def test_429_and_503_with_retry_after_wait_what_the_server_asks() -> None:
    assert _plan(429, {"retry-after": "1.5"}) == {
        "status": 429, "retry_after_s": 1.5, "source": "retry-after"}
    assert _plan(503, {"retry-after-ms": "40"}) == {
        "status": 503, "retry_after_s": 0.04, "source": "retry-after"}


def test_429_without_retry_after_backs_off_exponentially_up_to_the_cap() -> None:
    policy = WaitPolicy(max_waits=10, backoff_s=0.5, multiplier=2.0, max_backoff_s=3.0)
    waits: list[dict[str, object]] = []
    for _ in range(4):
        wait = _plan(429, {}, waits=waits, policy=policy)
        assert wait is not None
        waits.append(wait)
    assert [w["retry_after_s"] for w in waits] == [0.5, 1.0, 2.0, 3.0]
    assert {w["source"] for w in waits} == {"backoff"}


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (500, {"retry-after": "1"}),
                                                 (400, {})],
                         ids=["503-no-time", "500", "400"])
def test_other_failures_are_not_waited_out(status: int, headers: dict[str, str]) -> None:
    assert _plan(status, headers) is None


def test_a_call_that_used_its_waits_gives_up_naming_them() -> None:
    used = [{"status": 429, "retry_after_s": 0.05, "source": "retry-after"}] * 2
    with pytest.raises(ModelRateLimitedError, match=r"'gpt-test' answered 429 .*2 wait") as info:
        _plan(429, {"retry-after": "0.05"}, waits=used, policy=WaitPolicy(max_waits=2))
    assert info.value.waits == used
    assert not isinstance(info.value, PermanentError)  # the task's retry policy decides


def test_a_retry_after_longer_than_max_wait_is_refused_not_waited() -> None:
    with pytest.raises(ModelRateLimitedError, match=r"asks to wait 3\.6e\+03s"):
        _plan(429, {"retry-after": "3600"}, policy=WaitPolicy(max_wait_s=60))


def test_a_wait_past_the_runs_deadline_fails_permanently() -> None:
    with pytest.raises(ModelWaitPastDeadlineError, match="deadline is 1s away") as info:
        _plan(503, {"retry-after": "5"}, time_left_s=1.0)
    assert isinstance(info.value, PermanentError)
    assert (info.value.wait_s, info.value.status) == (5.0, 503)


def test_wait_policy_refuses_negative_bounds() -> None:
    with pytest.raises(ValueError, match="max_waits >= 0"):
        WaitPolicy(max_waits=-1)
