"""A model's max_concurrent holds across a worker pool: run by a worker, each model call
holds a slot in the store, so another worker (another process) waits for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chat_server import ChatServer, reply
from llm_helpers import GOOD, MODEL, Goal, client_for, quote_workflow

from ledgerflow.eventstore import open_store
from ledgerflow.llm import OpenAIChat
from ledgerflow.machines import Orchestrator, Worker


async def test_a_models_limit_is_a_slot_in_the_store_while_a_worker_calls_it(
    tmp_path: Path, chat_server: ChatServer,
) -> None:
    chat_server.then = reply(GOOD, delay_s=0.15)
    chat = OpenAIChat(client_for(chat_server), MODEL, max_concurrent=1)
    wf = quote_workflow(chat, name="llm-pool-limited", tasks=4)
    key = f"model:{chat.base_url}:{MODEL}"
    db = tmp_path / "runs.db"
    async with open_store(db) as store, open_store(db) as elsewhere:
        run_id = await Orchestrator(store).submit(wf, Goal())
        worker = Worker(store, [wf], poll_s=0.02)
        serving = asyncio.create_task(worker.run(until_idle=True))
        # Another worker's view: while a call is in flight, the model's one slot is taken.
        refused = granted = 0
        while not serving.done():
            if await elsewhere.acquire_slot(key, 1, "probe", 5.0):
                granted += 1
                await elsewhere.release_slot(key, "probe")
            else:
                refused += 1
            await asyncio.sleep(0.01)
        stats = await serving
        summary = await store.run(run_id)
    assert summary is not None
    assert summary.status == "completed"
    assert stats.tasks == 4
    assert refused > 0  # the slot was held in the store during the calls
    assert chat_server.max_in_flight == 1
    assert len(chat_server.requests) == 4
