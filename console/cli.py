"""The ``ledgerflow`` command as installed: the replay CLI plus the console's commands.

Imports point one way (console -> replay), so the console adds ``ui`` and
``view`` to the group :mod:`ledgerflow.replay.cli` defines, here, rather
than the replay CLI reaching up for them. Neither command imports the ASGI
stack until ``ui`` runs: the core install (no ``[ui]`` extra) keeps every
command, ``view`` included.

Example (what ``[project.scripts]`` runs)::

    python -m ledgerflow.console.cli view RUN --out run.html
"""

from __future__ import annotations

from ledgerflow.console import ui_cli, view_cli
from ledgerflow.replay.cli import main

__all__ = ["main"]

ui_cli.register(main)
view_cli.register(main)

if __name__ == "__main__":
    main()
