"""W1, ledgerflow with ``durable_dispatch=True``: every dispatch durable before its agent runs.

One commit (one fsync) per task of the chain: the like-for-like comparison with
peers that checkpoint every step before taking the next.
"""

from __future__ import annotations

import asyncio

from benchmarks._common import Result, cli
from benchmarks.rl_chain import _run


def run(n: int, db: str) -> Result:
    return asyncio.run(_run(n, db, durable_dispatch=True))


if __name__ == "__main__":
    cli(run)
