"""shared.adapters.snapshot.SnapshotStore against Azurite: a snapshot of several rows comes back
exactly as saved, its rows read at once and inflated in order while they arrive; a row missing,
a blob that is not the head's, and a stream that does not decompress each say so."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from azure.data.tables.aio import TableServiceClient

from shared.adapters.snapshot import (
    DELETED,
    NO_OVERLAY,
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
    with pytest.raises(SnapshotError, match=rf"row {head.slot}\|00001 is missing"):
        await snapshots.load(head, "ctx")


@pytest.mark.parametrize(
    ("damage", "reason", "noticed"),
    [
        (lambda b: b"not zlib at all", "does not decompress", "on load"),
        (lambda b: b[:20], "does not decompress: the blob ends inside its index", "on load"),
        (lambda b: b[:-3], "does not decompress: the stream is cut short or runs on", "with the states"),
        (lambda b: b + b"more", "does not decompress: the stream is cut short or runs on", "with the states"),
    ],
    ids=["not-zlib", "inside-the-index", "cut-short", "runs-on"],
)
async def test_a_stream_that_does_not_decompress_says_so(
    table_service: TableServiceClient, damage: Callable[[bytes], bytes], reason: str, noticed: str
) -> None:
    """(The head's digest is the damaged blob's: a bug wrote it, not damage in the table.) A night
    needs the index to start; the states, which go on decompressing behind it, say so when read."""
    _, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), damage(_small_blob("a", "b")), "ctx", "run-1")
    if noticed == "on load":
        with pytest.raises(SnapshotError, match=reason):
            await snapshots.load(head, "ctx")
        return
    snapshot = await snapshots.load(head, "ctx")  # the index is whole: the night can start
    assert sorted(snapshot.entries) == ["a", "b"]
    with pytest.raises(SnapshotError, match=reason):
        snapshot.state_bytes("a")


async def test_rows_that_are_not_the_head_s_blob_say_so_before_anything_else(
    table_service: TableServiceClient,
) -> None:
    _, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), _big_blob(), "ctx", "run-1")
    other = Head(head.etag, True, "ctx", head.slot, head.rows, head.length, "0" * 32)
    with pytest.raises(SnapshotError, match="do not match their head"):
        await snapshots.load(other, "ctx")


def _small_blob(*user_ids: str, on: Encoder | None = None) -> bytes:
    encoder = on or Encoder()
    for user_id in user_ids:
        encoder.add_raw(user_id, b"u" * 8, b"r" * 8, 0, DELETED, f'["{user_id}"]'.encode())
    return encoder.blob()


async def test_overlays_build_on_the_base_in_alternating_slots_until_a_new_base(
    table_service: TableServiceClient,
) -> None:
    _, snapshots = await _store(table_service)
    base_blob = _big_blob()
    head = await snapshots.save(Head(etag=None), base_blob, "ctx", "run-1")
    base = decode(base_blob)
    first = await snapshots.save_overlay(
        await snapshots.invalidate(head),
        _small_blob("user-1", "new-1", on=Encoder(base.profiles, base.columns)),
        "ctx",
        "run-2",
    )
    assert (first.slot, first.rows, first.digest) == (head.slot, head.rows, head.digest)  # the base stays
    assert first.overlay == 0 and first.overlay_rows == 1 and first.valid
    assert await snapshots.head() == first
    loaded = await snapshots.load(first, "ctx")
    assert len(loaded.entries) == len(base.entries) + 1
    assert loaded.state_bytes("user-1") == b'["user-1"]' and loaded.state_bytes("new-1") == b'["new-1"]'
    assert loaded.state_bytes("user-2") == base.state_bytes("user-2")

    # The next overlay replaces the last one (other slot); the base is still the same.
    second = await snapshots.save_overlay(
        await snapshots.invalidate(first), _small_blob("new-2", on=Encoder(base.profiles, base.columns)), "ctx", "run-3"
    )
    assert second.overlay == 1 and second.slot == head.slot
    loaded = await snapshots.load(second, "ctx")
    assert "new-2" in loaded.entries and "new-1" not in loaded.entries

    # A new base clears the overlay.
    third = await snapshots.save(await snapshots.invalidate(second), _small_blob("only"), "ctx", "run-4")
    assert third.slot != head.slot and third.overlay == NO_OVERLAY
    assert list((await snapshots.load(third, "ctx")).entries) == ["only"]
    # An overlay needs the base it was computed on: not another context, not no base at all.
    with pytest.raises(SnapshotError, match="needs the base"):
        await snapshots.save_overlay(third, _small_blob("x"), "other context", "run-5")
    with pytest.raises(SnapshotError, match="needs the base"):
        await snapshots.save_overlay(Head(etag=None), _small_blob("x"), "ctx", "run-5")


async def test_an_invalid_head_keeps_where_the_blobs_lie_and_loads_nothing(table_service: TableServiceClient) -> None:
    _, snapshots = await _store(table_service)
    head = await snapshots.save(Head(etag=None), _small_blob("a"), "ctx", "run-1")
    stale = await snapshots.invalidate(head)
    assert await snapshots.head() == stale
    assert (stale.valid, stale.slot, stale.rows, stale.digest) == (False, head.slot, head.rows, head.digest)
    with pytest.raises(SnapshotError, match="did not finish writing"):
        await snapshots.load(stale, "ctx")


async def test_a_damaged_overlay_is_refused_like_a_damaged_base(table_service: TableServiceClient) -> None:
    store, snapshots = await _store(table_service)
    base_blob = _small_blob("a")
    base = decode(base_blob)
    head = await snapshots.save(Head(etag=None), base_blob, "ctx", "run-1")
    head = await snapshots.save_overlay(head, _small_blob("b", on=Encoder(base.profiles, base.columns)), "ctx", "run-2")
    await store.users.delete_entity(PARTITION, f"o{head.overlay}|00000")
    with pytest.raises(SnapshotError, match=rf"row o{head.overlay}\|00000 is missing"):
        await snapshots.load(head, "ctx")
