"""The hand-built $batch and query calls against Azurite: same protocol the SDK speaks."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient, TableServiceClient

from shared.adapters.table_wire import (
    MAX_BINARY_BYTES,
    BatchOp,
    BatchRejected,
    binary_value,
    entity_json,
    get_entity,
    query_pages,
    range_filter,
    submit_batch,
)


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


async def test_submit_batch_returns_each_operations_etag_in_order(table: TableClient) -> None:
    assert await submit_batch(table, []) == []
    first = await submit_batch(table, [BatchOp("create", row(i)) for i in range(3)])
    assert len(first) == 3 and all(etag and etag.startswith('W/"datetime') for etag in first)
    ops = [
        BatchOp("update", row(1, Name="one"), first[1]),  # the returned ETag satisfies If-Match
        BatchOp("create", row(7)),
        BatchOp("upsert", row(0, Name="zero")),
        BatchOp("upsert", row(9)),
    ]
    etags = await submit_batch(table, ops)
    queried = {e["RowKey"]: e["odata.etag"] async for page in query_pages(table, "PartitionKey eq 'u-a'") for e in page}
    assert etags == [queried[op.entity["RowKey"]] for op in ops]
    assert first[2] == queried["s|0002"]  # untouched since the first batch
    assert etags[0] != first[1]
    assert (await table.get_entity("u-a", "s|0001")).metadata["etag"] == etags[0]  # the SDK reads the same ETag
    with pytest.raises(BatchRejected) as rejected:  # the first batch's ETag for row 1 is stale now
        await submit_batch(table, [BatchOp("update", row(1, Name="again"), first[1])])
    assert rejected.value.status == 412
    again = await submit_batch(table, [BatchOp("update", row(1, Name="again"), etags[0])])
    got = await get_entity(table, "u-a", "s|0001")
    assert got is not None and got["Name"] == "again" and got["odata.etag"] == again[0]


async def test_get_entity_is_a_point_read_of_the_queried_json(table: TableClient) -> None:
    key = {"PartitionKey": "o'neil & co=1", "RowKey": "Zoë's 50% (a,b) 🚀"}  # quoted and percent-encoded in the URL
    (etag,) = await submit_batch(table, [BatchOp("upsert", {**key, "Name": "x", "Big": 2**40, "Ratio": 0.5})])
    await submit_batch(table, [BatchOp("upsert", {**key, "RowKey": key["RowKey"] + "2", "Name": "other"})])
    got = await get_entity(table, key["PartitionKey"], key["RowKey"])
    assert got is not None
    assert got["odata.etag"] == etag and "odata.metadata" not in got
    assert (got["PartitionKey"], got["RowKey"], got["Name"]) == (key["PartitionKey"], key["RowKey"], "x")
    assert got["Big"] == str(2**40) and got["Big@odata.type"] == "Edm.Int64" and got["Ratio"] == 0.5
    queried = {
        e["RowKey"]: e async for page in query_pages(table, range_filter(key["PartitionKey"], "Z", "Z~")) for e in page
    }
    assert len(queried) == 2 and got == queried[key["RowKey"]]
    assert await get_entity(table, key["PartitionKey"], "missing") is None
    assert await get_entity(table, "missing", key["RowKey"]) is None


async def test_get_entity_of_a_missing_table_is_an_error(table_service: TableServiceClient) -> None:
    missing = table_service.get_table_client("NoSuchTable")
    with pytest.raises(BatchRejected) as rejected:
        await get_entity(missing, "p", "r")
    assert rejected.value.status == 404 and rejected.value.code == "TableNotFound"


def blob(size: int) -> bytes:
    return bytes((i * 7 + i // 256) % 256 for i in range(size))


async def test_binary_properties_round_trip_with_the_sdk(table: TableClient) -> None:
    values = {
        "Full": blob(MAX_BINARY_BYTES),
        "Small": bytearray(b"\x00\xff\r\n--x"),
        "View": memoryview(b"mv"),
        "Empty": b"",
    }
    await submit_batch(table, [BatchOp("create", row(1, **values))])
    sdk = await table.get_entity("u-a", "s|0001")
    assert {name: sdk[name] for name in values} == {name: bytes(v) for name, v in values.items()}
    assert all(isinstance(sdk[name], bytes) for name in values)  # typed Edm.Binary, not strings
    (ours,) = [e async for page in query_pages(table, range_filter("u-a", "s|", "s}")) for e in page]
    assert ours["Full@odata.type"] == "Edm.Binary"
    assert {name: binary_value(ours, name) for name in values} == {name: bytes(v) for name, v in values.items()}
    assert binary_value(ours, "Absent") is None
    # and the other way round: written by the SDK, read by the point read
    await table.create_entity({"PartitionKey": "u-a", "RowKey": "s|0002", "Data": b"\x01\x02\x03\xfe"})
    point = await get_entity(table, "u-a", "s|0002")
    assert point is not None and binary_value(point, "Data") == b"\x01\x02\x03\xfe"


async def test_binary_size_limit_is_checked_before_sending(table: TableClient) -> None:
    with pytest.raises(ValueError, match=r"property Payload holds 65537 bytes.*at most 65536"):
        entity_json(row(1, Payload=blob(MAX_BINARY_BYTES + 1)))
    with pytest.raises(ValueError, match="property Payload"):
        await submit_batch(table, [BatchOp("create", row(0)), BatchOp("create", row(1, Payload=bytearray(70_000)))])
    assert await get_entity(table, "u-a", "s|0000") is None  # nothing of the batch was sent


def test_binary_value_rejects_what_is_not_base64_binary() -> None:
    with pytest.raises(ValueError, match="property Data is not valid base64"):
        binary_value({"Data": "not base64!", "Data@odata.type": "Edm.Binary"}, "Data")
    with pytest.raises(ValueError, match="property Data is not valid base64"):
        binary_value({"Data": "AP9oaQ="}, "Data")  # bad padding
    with pytest.raises(ValueError, match=r"property Data is Edm\.Int64, not Edm\.Binary"):
        binary_value({"Data": "1234", "Data@odata.type": "Edm.Int64"}, "Data")
    with pytest.raises(ValueError, match="property Data is a int"):
        binary_value({"Data": 12}, "Data")
    assert binary_value({"Data": "AP9oaQ==", "Data@odata.type": "Edm.Binary"}, "Data") == b"\x00\xffhi"
