"""What every CLI command shares: the --db option, one-line errors, opening the store.

The exit-code rule (stated in ``ledgerflow --help`` too): 0 when the command
did what was asked; 1 when an operation was refused or found a problem (no
such store or run, an ambiguous run id, a resolution the run refuses, a run
that ends failed, ``verify`` finding a problem, ``diff`` finding the runs
differ, a ``--to``/``--at`` seq past the run's end, a well-formed
MODULE:WORKFLOW that cannot be imported); 2 when the command line itself is
wrong (click's usage errors, a seq below 1, a workflow that is not
MODULE:WORKFLOW, and a ``--goal``/``--output`` that is not strict JSON).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TextIO, TypeVar

import click
import msgspec

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import (
    EventStore,
    StoreOpener,
    StoreOpenError,
    StoreReadOnlyError,
    StoreUpgradeRequiredError,
    open_store,
)
from ledgerflow.eventstore.opening import parse_store_url
from ledgerflow.replay.errors import JsonArgumentError, StorePathIsDirectoryError
from ledgerflow.replay.timeline import decode_log

__all__ = [
    "DEFAULT_DB",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "LedgerflowGroup",
    "OneLineUsageError",
    "PipeSafeStdout",
    "classify",
    "db_option",
    "for_the_cli",
    "friendly",
    "is_workflow_ref",
    "must_not_be_a_directory",
    "naming_bad_events",
    "open_existing",
    "open_for_reading",
    "one_line",
    "one_line_usage",
    "open_or_create",
    "run_async",
    "status_line",
    "waiting_hints",
    "with_db",
    "workflow_ref",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB = "ledgerflow.db"
#: A refused operation, or a check that found a problem.
EXIT_REFUSED = 1
#: The command line is wrong (click's own code for usage errors).
EXIT_USAGE = 2


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's coroutine on a fresh event loop: ``run_async(go())``."""
    return asyncio.run(coro)


def classify(exc: BaseException) -> str | None:
    """The one line a user sees for an error that is not ledgerflow's own, or None if a bug.

    These come from below ledgerflow's own checks (a hand-edited store, the
    operating system); each gets a sentence saying what happened and what to
    do instead of a traceback.

    Example::

        >>> classify(RecursionError("maximum recursion depth exceeded"))
        'A value is nested too deep to process (maximum recursion depth exceeded); ...'
    """
    if isinstance(exc, msgspec.DecodeError | msgspec.ValidationError):
        return (f"An event in this store cannot be decoded ({exc}): the log was edited or "
                "written by another program; run `ledgerflow verify RUN` to find the event.")
    if isinstance(exc, RecursionError):
        return (f"A value is nested too deep to process ({exc}); nothing was changed, and "
                "`ledgerflow verify RUN` names the event if it is in the log.")
    if isinstance(exc, UnicodeError):
        return (f"A text holds characters that are not valid Unicode ({exc}); nothing was "
                "changed, and `ledgerflow verify RUN` names the event if it is in the log.")
    if isinstance(exc, PermissionError | FileNotFoundError | IsADirectoryError):
        where = f" '{exc.filename}'" if exc.filename else ""
        return f"Cannot use{where}: {exc.strerror}; check the path and its permissions."
    return None


class PipeSafeStdout:
    """``sys.stdout`` for one command: a reader that goes away (``| head``) only silences it.

    Without it a broken pipe surfaced wherever the next write happened: in
    click's ``echo`` (caught, exit 0 even when ``diff`` had found the runs
    differ), in rich's ``print`` (its own handler, exit 1) or in the
    interpreter's last flush. With it every write after the reader left is
    dropped, the command runs to its end, and its exit code is the one of its
    result. The real stream's descriptor is pointed at ``/dev/null`` so that
    what it still buffers is flushed somewhere at exit, silently.

    Example::

        sys.stdout = PipeSafeStdout(sys.stdout)
    """

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self.inner.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.inner.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.broken = True
        try:
            fd = self.inner.fileno()
        except (OSError, ValueError, AttributeError):  # an in-memory stream (tests)
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextlib.contextmanager
def _pipe_safe_stdout() -> Any:
    real = sys.stdout
    guard = PipeSafeStdout(real)
    sys.stdout = guard
    try:
        yield
    finally:
        guard.flush()  # what csv and print still buffer, before the interpreter's flush
        sys.stdout = real


#: What a CLI user can do with a store they cannot write (the store's own
#: messages speak to a programmer: "open it with read_only=True").
READ_ONLY_HERE = ("the store is read-only here: the reading commands (runs, show, log, replay, "
                  "verify, diff) work on it; to change a run, use a copy you can write")


def for_the_cli(exc: LedgerflowError) -> str:
    """The one line a CLI user sees for ``exc``: its message, in the CLI's words.

    Example::

        >>> for_the_cli(StoreReadOnlyError("runs.db", "append"))
        "Cannot append on the store 'runs.db': the store is read-only here: ..."
    """
    if isinstance(exc, StoreReadOnlyError):
        return f"Cannot {exc.operation} on the store {exc.location!r}: {READ_ONLY_HERE}."
    if isinstance(exc, StoreUpgradeRequiredError):
        # The store's own message, with a --db a shell takes as one word.
        return (f"The store {exc.location!r} is at schema version {exc.version} and this "
                f"ledgerflow writes version {exc.current}, so nothing was written (the reading "
                f"commands still work); run `ledgerflow db upgrade --db "
                f"{shlex.quote(exc.location)}` to migrate it, then retry.")
    if isinstance(exc, StoreOpenError) and exc.read_only_would_work:
        return (f"Cannot open the store {exc.path!r} to change it: {exc.problem}; "
                f"{READ_ONLY_HERE}.")
    return one_line(str(exc))


def one_line(text: str) -> str:
    """``text`` on one line: the line breaks of a multi-line reason folded into "; ".

    A planner's pydantic ``ValidationError`` is several lines; a status line
    or an error line stays one.

    Example::

        >>> one_line("1 validation error for Plan\\ntasks\\n  Field required")
        '1 validation error for Plan; tasks; Field required'
    """
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def with_db(command: str, db: str) -> str:
    """``command`` as a hint a user can paste: with ``--db`` when it is not the default.

    Example::

        >>> with_db("ledgerflow show r1", "my runs.db")
        "ledgerflow show r1 --db 'my runs.db'"
    """
    return command + ("" if db == DEFAULT_DB else f" --db {shlex.quote(db)}")


def status_line(run_id: str, status: str, reason: str) -> str:
    """``run ID: STATUS — REASON``, the reason on one line."""
    return f"run {run_id}: {status}" + (f" — {one_line(reason)}" if reason else "")


def waiting_hints(run_id: str, escalations: Any, db: str) -> list[str]:
    """One pasteable ``ledgerflow resolve`` line per task the run waits on."""
    return [f"  waiting on {task_id}: "
            + with_db(f"ledgerflow resolve {run_id} {task_id}", db)
            + " (--output JSON | --retry | --abandon)" for task_id in escalations]


def friendly(fn: F) -> F:
    """Turn every error a user can cause into one line and the exit code of its kind.

    Output goes through :class:`PipeSafeStdout`: a closed pipe is not an
    error and does not change the exit code.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _pipe_safe_stdout():
            return _classified(fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _classified(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one command, turning what a user can cause into one line (see :func:`friendly`)."""
    try:
        return fn(*args, **kwargs)
    except (click.ClickException, click.exceptions.Exit, click.Abort):
        raise
    except JsonArgumentError as exc:
        raise click.BadParameter(exc.problem + ".", param_hint=f"'{exc.what}'") from None
    except LedgerflowError as exc:
        raise click.ClickException(for_the_cli(exc)) from None
    except KeyboardInterrupt:
        raise click.Abort from None
    except BrokenPipeError:
        # A write that bypassed sys.stdout lost its reader: quietly, as cat and
        # grep do; the command did not get to its result, so nothing to keep.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        sys.exit(0)
    except Exception as exc:
        if os.environ.get("LEDGERFLOW_DEBUG"):
            raise
        line = classify(exc)
        if line is not None:
            raise click.ClickException(line) from None
        raise click.ClickException(
            f"Internal error {type(exc).__name__}: {exc}; this is a bug in ledgerflow, "
            "please report it with the traceback (set LEDGERFLOW_DEBUG=1 to see it)."
        ) from None


def is_workflow_ref(text: str) -> bool:
    """Whether ``text`` has the shape MODULE:WORKFLOW (dotted module, then an attribute).

    Example::

        >>> is_workflow_ref("ledgerflow.examples.travel:wf"), is_workflow_ref("garbage")
        (True, False)
    """
    module, sep, attr = text.partition(":")
    return bool(sep) and attr.isidentifier() and all(
        part.isidentifier() for part in module.split("."))


def workflow_ref(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Click callback: a malformed MODULE:WORKFLOW is a usage error (exit 2).

    One that is well-formed but not found (no such module, no such
    attribute) is refused later, when it is imported (exit 1).
    """
    if value is not None and not is_workflow_ref(value):
        raise click.BadParameter(
            f"'{value}' is not MODULE:WORKFLOW (for example ledgerflow.examples.travel:wf).")
    return value


class OneLineUsageError(click.ClickException):
    """A usage error shown as one line, ``Error: ...``, with exit code 2."""

    exit_code = EXIT_USAGE


def one_line_usage(exc: click.UsageError) -> OneLineUsageError:
    """``exc`` as one line naming where the help is, instead of click's three lines.

    Example::

        >>> one_line_usage(click.UsageError("No such command 'x'.")).message
        "No such command 'x'."
    """
    message = exc.format_message()
    if exc.ctx is not None:
        message += f" See '{exc.ctx.command_path} --help'."
    return OneLineUsageError(message)


class LedgerflowGroup(click.Group):
    """The ``ledgerflow`` group: every usage error is one line (``Error: ...``), exit 2.

    Click prints a usage error as three lines (Usage, Try, Error); a user
    reads the last one, a script greps one. ``ledgerflow`` alone still
    prints the help.
    """

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise one_line_usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise one_line_usage(exc) from None


def db_option(fn: F) -> F:
    """The ``--db`` option every command takes (``$LEDGERFLOW_DB`` as the default)."""
    return click.option(
        "--db", default=DEFAULT_DB, envvar="LEDGERFLOW_DB", show_default=True,
        help="The store: a SQLite file path, a sqlite:/// url, or a postgresql:// url.",
    )(fn)


def must_not_be_a_directory(db: str) -> None:
    """Refuse a ``--db`` that names a directory before SQLite turns it into an I/O error.

    The store module reports what SQLite says ("disk I/O error", "cannot open
    or create the file"), which sends a user to check their disk; the CLI knows
    the one fix. A url it cannot read is left for :func:`open_store` to refuse.

    Example::

        must_not_be_a_directory("runs.db")      # a file, or not there yet: fine
    """
    try:
        target = parse_store_url(db)
    except LedgerflowError:
        return
    if target.backend == "sqlite" and os.path.isdir(target.location):
        raise StorePathIsDirectoryError(db, target.location)


def open_or_create(db: str) -> StoreOpener:
    """Open the store to run a workflow in it, creating it if it is not there (run, demo)."""
    must_not_be_a_directory(db)
    return open_store(db)


def open_for_reading(db: str) -> StoreOpener:
    """Open an existing store read-only: reading commands never create or change one.

    Example::

        async with open_for_reading("runs.db") as store:
            print(await store.runs())
    """
    must_not_be_a_directory(db)
    return open_store(db, create=False, read_only=True)


def open_existing(db: str) -> StoreOpener:
    """Open an existing store to append to it (resume, resolve, fork); never create one."""
    must_not_be_a_directory(db)
    return open_store(db, create=False)


@contextlib.asynccontextmanager
async def naming_bad_events(store: EventStore, run_id: str) -> AsyncIterator[None]:
    """Turn an undecodable event met by the runtime into an error naming its seq.

    The runtime decodes as it folds and does not say where; the log is read
    again only when that happens, so the common path costs nothing.

    Example::

        async with naming_bad_events(store, run_id):
            await Orchestrator(store).resume(run_id)
    """
    try:
        yield
    except (msgspec.DecodeError, msgspec.ValidationError):
        decode_log(run_id, await store.read_all(run_id))  # raises LogDecodeError with the seq
        raise
