"""What every CLI command shares: the --db option, one-line errors, the event loop."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import EventStore, open_store
from ledgerflow.eventstore.opening import parse_store_url

__all__ = ["DEFAULT_DB", "db_option", "friendly", "open_existing", "run_async"]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB = "ledgerflow.db"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def friendly(fn: F) -> F:
    """Turn every error a user can cause into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except LedgerflowError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort from None
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, as cat and grep do.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)
        except Exception as exc:
            if os.environ.get("LEDGERFLOW_DEBUG"):
                raise
            raise click.ClickException(
                f"Unexpected {type(exc).__name__}: {exc} "
                "(set LEDGERFLOW_DEBUG=1 for the traceback)."
            ) from None

    return wrapper  # type: ignore[return-value]


def db_option(fn: F) -> F:
    return click.option(
        "--db", default=DEFAULT_DB, envvar="LEDGERFLOW_DB", show_default=True,
        help="The store: a SQLite file path or a sqlite:/// url.",
    )(fn)


def _require_existing(db: str) -> None:
    """Reading commands must not create an empty store by accident."""
    target = parse_store_url(db)
    if target.backend == "sqlite" and not Path(target.location).exists():
        raise click.ClickException(
            f"No store at '{target.location}'; run `ledgerflow demo` to create one, "
            "or pass --db (or set LEDGERFLOW_DB)."
        )


async def open_existing(db: str) -> EventStore:
    """Open a store that must already exist (reading commands never create one)."""
    _require_existing(db)
    return await open_store(db)


