"""Secrets on the command line: ``ledgerflow secrets list|erase RUN``.

The log of a run holds a reference where each secret field's value was
(``{"$secret": "sec_..."}``); the values live in the store's vault, outside
the hash chain. ``list`` shows which references a run keeps (never a value);
``erase`` deletes them, for a run whose secrets must be forgotten (a leaked
key rotated, a customer's data erased). Its log still verifies; anything that
needs an erased secret later fails naming it. Registered on the
``ledgerflow`` group by :mod:`ledgerflow.replay.cli`.

Example (a shell)::

    ledgerflow secrets list pay-1 --db runs.db
    ledgerflow secrets erase pay-1 --db runs.db --yes
"""

from __future__ import annotations

import click

from ledgerflow.eventstore import EventStore
from ledgerflow.machines import RunNotFoundError
from ledgerflow.replay.cli_support import (
    db_option,
    friendly,
    open_existing,
    open_for_reading,
    run_async,
)

__all__ = ["register", "secrets_group"]


@click.group("secrets")
def secrets_group() -> None:
    """The secret values a run's log refers to: list or erase them (never shown)."""


async def _must_exist(store: EventStore, run_id: str) -> None:
    if await store.run(run_id) is None:
        raise RunNotFoundError(run_id)


@secrets_group.command("list")
@click.argument("run_id", metavar="RUN")
@db_option
@friendly
def list_cmd(*, run_id: str, db: str) -> None:
    """The references of RUN's kept secrets, one a line (their values are never printed)."""

    async def go() -> list[str]:
        async with open_for_reading(db) as store:
            await _must_exist(store, run_id)
            return sorted(await store.run_secrets(run_id))

    refs = run_async(go())
    for ref in refs:
        click.echo(ref)
    click.echo(f"{len(refs)} secret(s) kept for run {run_id}", err=True)


@secrets_group.command("erase")
@click.argument("run_id", metavar="RUN")
@click.option("--yes", is_flag=True, help="Erase without asking.")
@db_option
@friendly
def erase_cmd(*, run_id: str, yes: bool, db: str) -> None:
    """Delete every secret kept for RUN. Its log is untouched and still verifies."""
    if not yes:
        click.confirm(f"Erase the secrets of run {run_id}? Nothing can hand them to an agent "
                      "again", abort=True)

    async def go() -> int:
        async with open_existing(db) as store:
            await _must_exist(store, run_id)
            return await store.erase_secrets(run_id)

    click.echo(f"erased {run_async(go())} secret(s) of run {run_id}")


def register(group: click.Group) -> None:
    """Add ``secrets`` to ``group``."""
    group.add_command(secrets_group)
