"""shared.adapters.snapshot.SnapshotStore against Azurite: a snapshot of several rows comes back
exactly as saved, its rows read at once and inflated in order while they arrive; a row missing,
a blob that is not the head's, and a stream that does not decompress each say so."""

from __future__ import annotations

import os
import zlib

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters.snapshot import (
    DELETED,
    PART_BYTES,
    PARTITION,
    PARTS_PER_ROW,
    Encoder,
    Head,
    SnapshotError,
    SnapshotStore,
    decode,
)
from shared.adapters.state_store import StateStore

pytestmark = pytest.mark.integration


def _big_blob(users: int = 4500) -> bytes:
    """A valid snapshot too big for one row: incompressible states (never parsed by a load)."""
    encoder = Encoder()
    for n in range(users):
        encoder.add_raw(f"user-{n}", os.urandom(8), os.urandom(8), 0, DELETED, os.urandom(300).hex().encode())
    return encoder.blob()


async def _store(service: TableServiceClient) -> tuple[StateStore, SnapshotStore]:
    store = StateStore(service)
    await store.ensure_tables()
    return store, store.snapshot


async def test_a_snapshot_of_several_rows_loads_exactly_as_saved(table_service: TableServiceClient) -> None:
    store, snapshots = await _store(table_service)
    blob = _big_blob()
    assert len(blob) > 2 * PART_BYTES * PARTS_PER_ROW  # three rows or more
    head = await snapshots.save(Head(etag=None), blob, "ctx", "run-1")
    store.counters.reads = 0
    loaded = await snapshots.load(head, "ctx")
    expected = decode(blob)
    assert loaded.entries == expected.entries and loaded.states == expected.states
    assert loaded.columns == expected.columns and loaded.profiles == expected.profiles
    assert store.counters.reads == head.rows >= 3
    # The next snapshot goes to the other slot; the head names it, and it loads too.
    smaller = Encoder()
    smaller.add_raw("only", b"a" * 8, b"b" * 8, 0, DELETED, b"[]")
    second = await snapshots.save(head, smaller.blob(), "ctx", "run-2")
    assert second.slot != head.slot
    assert list((await snapshots.load(second, "ctx")).entries) == ["only"]


async def test_a_missing_row_is_named(table_service: TableServiceClient) -> None:
    store, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), _big_blob(), "ctx", "run-1")
    await store.users.delete_entity(PARTITION, f"{head.slot}|00001")
    with pytest.raises(SnapshotError, match="row 1 is missing"):
        await snapshots.load(head, "ctx")


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"not zlib at all", "does not decompress"),
        (zlib.compress(b"x" * 100)[:-3], "does not decompress: the stream is cut short"),
        (zlib.compress(b"x" * 100) + b"more", "does not decompress: the stream is cut short or runs on"),
    ],
    ids=["not-zlib", "cut-short", "runs-on"],
)
async def test_a_stream_that_does_not_decompress_says_so(
    table_service: TableServiceClient, blob: bytes, reason: str
) -> None:
    _, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), blob, "ctx", "run-1")  # the head's digest is this blob's
    with pytest.raises(SnapshotError, match=reason):
        await snapshots.load(head, "ctx")


async def test_rows_that_are_not_the_head_s_blob_say_so_before_anything_else(
    table_service: TableServiceClient,
) -> None:
    _, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), _big_blob(), "ctx", "run-1")
    other = Head(head.etag, True, "ctx", head.slot, head.rows, head.length, "0" * 32)
    with pytest.raises(SnapshotError, match="do not match their head"):
        await snapshots.load(other, "ctx")
