"""The hand-built $batch and query calls against Azurite: same protocol the SDK speaks."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters.table_wire import BatchOp, BatchRejected, query_pages, range_filter, submit_batch


@pytest.fixture
async def table(table_service: TableServiceClient) -> TableClient:
    return await table_service.create_table("WireTest")


def row(i: int, **extra: object) -> dict[str, object]:
    return {"PartitionKey": "u-a", "RowKey": f"s|{i:04d}", "Name": f"O'Brien <b>{i}</b> Zoë 🚀", **extra}


async def test_a_batch_round_trips_through_the_sdk_reader(table: TableClient) -> None:
    await submit_batch(
        table,
        [BatchOp("create", row(i, Count=i, Flag=i % 2 == 0, Big=2**40 + i, Ratio=i / 4)) for i in range(100)],
    )
    got = await table.get_entity("u-a", "s|0007")
    assert got["Name"] == "O'Brien <b>7</b> Zoë 🚀"
    assert got["Count"] == 7 and got["Flag"] is False
    assert got["Big"].value == 2**40 + 7 and got["Ratio"] == 1.75


async def test_update_needs_the_current_etag_and_rejects_the_whole_batch(table: TableClient) -> None:
    await submit_batch(table, [BatchOp("create", row(i)) for i in range(3)])
    current = await table.get_entity("u-a", "s|0001")
    stale = current.metadata["etag"]
    await submit_batch(table, [BatchOp("update", row(1, Name="first"), stale)])
    with pytest.raises(BatchRejected) as rejected:
        await submit_batch(
            table, [BatchOp("upsert", row(0, Name="never")), BatchOp("update", row(1, Name="second"), stale)]
        )
    assert rejected.value.status == 412 and rejected.value.code == "UpdateConditionNotSatisfied"
    assert rejected.value.index == 1
    assert (await table.get_entity("u-a", "s|0000"))["Name"] != "never"  # all or nothing
    assert (await table.get_entity("u-a", "s|0001"))["Name"] == "first"


async def test_create_of_an_existing_row_is_a_conflict(table: TableClient) -> None:
    await submit_batch(table, [BatchOp("create", row(5))])
    with pytest.raises(BatchRejected) as rejected:
        await submit_batch(table, [BatchOp("create", row(6)), BatchOp("create", row(5))])
    assert rejected.value.status == 409 and rejected.value.code == "EntityAlreadyExists"
    assert rejected.value.index == 1
    with pytest.raises(ResourceNotFoundError):
        await table.get_entity("u-a", "s|0006")


async def test_batch_limits_are_checked_before_sending(table: TableClient) -> None:
    with pytest.raises(ValueError, match="at most 100"):
        await submit_batch(table, [BatchOp("upsert", row(i)) for i in range(101)])
    with pytest.raises(ValueError, match="one partition"):
        await submit_batch(table, [BatchOp("upsert", row(1)), BatchOp("upsert", {**row(2), "PartitionKey": "u-b"})])
    with pytest.raises(ValueError, match="ETag"):
        await submit_batch(table, [BatchOp("update", row(1))])


async def test_query_pages_follow_continuations_and_respect_the_range(table: TableClient) -> None:
    for start in range(0, 250, 100):
        await submit_batch(table, [BatchOp("upsert", row(i)) for i in range(start, min(start + 100, 250))])
    await submit_batch(table, [BatchOp("upsert", {**row(1), "RowKey": "e|0001|x"})])  # outside the range
    pages = [page async for page in query_pages(table, range_filter("u-a", "s|", "s}"), page_size=60)]
    assert [len(p) for p in pages] == [60, 60, 60, 60, 10]
    keys = [e["RowKey"] for p in pages for e in p]
    assert keys == sorted(f"s|{i:04d}" for i in range(250))
    assert all(e["odata.etag"].startswith('W/"datetime') for p in pages for e in p)


async def test_quotes_in_filter_values_are_escaped(table: TableClient) -> None:
    await submit_batch(table, [BatchOp("upsert", {"PartitionKey": "o'neil", "RowKey": "a'b", "V": 1})])
    found = [e async for page in query_pages(table, range_filter("o'neil", "a", "b")) for e in page]
    assert [(e["PartitionKey"], e["RowKey"]) for e in found] == [("o'neil", "a'b")]
