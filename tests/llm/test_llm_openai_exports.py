"""ledgerflow.llm's public names, imported lazily: the package imports without openai, and a
missing openai is named with the extra that installs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import ledgerflow.llm

PUBLIC = [
    "LedgerflowDurability",
    "ModelLimitConflictError",
    "ModelOutputError",
    "ModelRateLimitedError",
    "ModelWaitPastDeadlineError",
    "OpenAIChat",
    "Price",
    "PriceMissingError",
    "WaitPolicy",
    "run_agent",
]


def test_public_names_are_pinned() -> None:
    assert ledgerflow.llm.__all__ == PUBLIC


def _run_without_openai(code: str) -> subprocess.CompletedProcess[str]:
    # None in sys.modules makes "import openai" fail as if it were not installed.
    prelude = "import sys\nsys.modules['openai'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, check=False)


def test_the_package_and_its_plain_names_import_without_openai() -> None:
    done = _run_without_openai("""
        import ledgerflow.llm as llm
        print(llm.Price(0.4, 1.6).cost(input_tokens=10**6, output_tokens=0))
        print(llm.WaitPolicy().max_waits)
        print('openai' in sys.modules and sys.modules['openai'] is not None)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0.4", "5", "False"]


def test_openaichat_without_openai_says_which_extra_to_install() -> None:
    done = _run_without_openai("""
        try:
            from ledgerflow.llm import OpenAIChat
        except ImportError as exc:
            print(exc)
    """)
    assert done.returncode == 0, done.stderr
    assert "install ledgerflow[openai]" in done.stdout
    assert "OpenAIChat" in done.stdout


def test_an_unknown_name_is_an_attribute_error() -> None:
    assert not hasattr(ledgerflow.llm, "OpenAIChatt")
