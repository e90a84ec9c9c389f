"""The debugging-loop commands: replay, verify, resume, fork, diff (registered on the CLI)."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(group: click.Group) -> None:
    """Add the debugging-loop commands to ``group``."""
    return
