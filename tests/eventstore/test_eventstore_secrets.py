"""The secret vault on both backends: kept durably, found by reference, erased by run."""

from __future__ import annotations

import pytest
from eventstore_helpers import StoreFactory

from ledgerflow.eventstore import EventStore, InvalidQueryError, StoreReadOnlyError


async def test_kept_secrets_are_found_by_reference_from_another_connection(
    store_factory: StoreFactory,
) -> None:
    one = await store_factory("vault")
    two = await store_factory("vault")
    await one.put_secrets("r1", {"sec_a1": b'"sk-1"', "sec_a2": b'{"pin": 1234}'})
    await one.put_secrets("r2", {"sec_b1": b'"other"'})
    assert await two.get_secrets(["sec_a1", "sec_b1", "sec_gone"]) == {
        "sec_a1": b'"sk-1"', "sec_b1": b'"other"'}
    assert await two.run_secrets("r1") == {"sec_a1": b'"sk-1"', "sec_a2": b'{"pin": 1234}'}


async def test_a_reference_keeps_its_first_value(store: EventStore) -> None:
    await store.put_secrets("r1", {"sec_a1": b'"first"'})
    await store.put_secrets("r1", {"sec_a1": b'"second"'})
    assert await store.get_secrets(["sec_a1"]) == {"sec_a1": b'"first"'}


async def test_erase_forgets_one_runs_secrets_only(store: EventStore) -> None:
    await store.put_secrets("r1", {"sec_a1": b"1", "sec_a2": b"2"})
    await store.put_secrets("r2", {"sec_b1": b"3"})
    assert await store.erase_secrets("r1") == 2
    assert await store.erase_secrets("r1") == 0
    assert await store.get_secrets(["sec_a1", "sec_a2", "sec_b1"]) == {"sec_b1": b"3"}


async def test_many_references_are_looked_up_in_one_call(store: EventStore) -> None:
    values = {f"sec_{i:04d}": str(i).encode() for i in range(1200)}
    await store.put_secrets("r1", values)
    assert await store.get_secrets(list(values)) == values


@pytest.mark.parametrize("bad", ["", "key", "sec_", "sec_" + "x" * 100, 7])
async def test_a_malformed_reference_is_refused_naming_it(store: EventStore, bad: object) -> None:
    with pytest.raises(InvalidQueryError, match="secret reference"):
        await store.put_secrets("r1", {bad: b"1"})  # type: ignore[dict-item]
    with pytest.raises(InvalidQueryError, match="secret reference"):
        await store.get_secrets([bad])  # type: ignore[list-item]


async def test_a_value_that_is_not_bytes_is_refused(store: EventStore) -> None:
    with pytest.raises(InvalidQueryError, match="bytes"):
        await store.put_secrets("r1", {"sec_a1": "clear"})  # type: ignore[dict-item]


async def test_a_read_only_store_keeps_no_secret(store_factory: StoreFactory) -> None:
    writer = await store_factory("ro")
    await writer.put_secrets("r1", {"sec_a1": b"1"})
    reader = await store_factory("ro", read_only=True)
    assert await reader.get_secrets(["sec_a1"]) == {"sec_a1": b"1"}
    with pytest.raises(StoreReadOnlyError):
        await reader.put_secrets("r1", {"sec_a2": b"2"})
    with pytest.raises(StoreReadOnlyError):
        await reader.erase_secrets("r1")
