"""shared.jobs.sync_memory.NextSnapshot: tonight's blob as an overlay on last night's base holds
exactly the users whose entry is not the base's, and base + that overlay remember everyone as
last night's snapshot did; past the overlay share, the night writes a new base."""

from __future__ import annotations

from shared.adapters.snapshot import DELETED, STEADY, Encoder, Head, Snapshot, decode
from shared.jobs.sync_memory import Memory, NextSnapshot


def _state(user_id: str, version: int) -> bytes:
    return f'["{user_id}",{version}]'.encode()


def _last_night() -> tuple[bytes, Snapshot]:
    """A base of 20 users (u15..u19 deleted long ago) and last night's overlay: u3 changed, u5
    deleted last night, u16 rewritten."""
    base = Encoder()
    for i in range(20):
        base.add_raw(f"u{i}", b"a" * 8, b"b" * 8, 0, STEADY | DELETED if i < 15 else DELETED, _state(f"u{i}", 0))
    base_blob = base.blob()
    based = decode(base_blob)
    overlay = Encoder(based.profiles, based.columns)
    overlay.add_raw("u3", b"c" * 8, b"b" * 8, 0, STEADY | DELETED, _state("u3", 1))
    overlay.add_raw("u16", b"a" * 8, b"b" * 8, 0, DELETED, _state("u16", 1))
    overlay.add_raw("u5", b"a" * 8, b"b" * 8, 0, DELETED, _state("u5", 1))
    return base_blob, decode(base_blob, overlay.blob())


def _tonight(snapshot: Snapshot) -> NextSnapshot:
    """Everyone carried as remembered: pages, one by one, and the unseen deleted users."""
    tonight = NextSnapshot(Memory(Head("etag", True, "ctx"), snapshot=snapshot))
    page = ["u0", "u1", "u2", "u4", *(f"u{i}" for i in range(6, 15))]
    tonight.carry_all(page, [snapshot.entries[u] for u in page])
    tonight.carry("u3", snapshot.entries["u3"])
    for user_id in ("u5", "u15", "u16", "u17", "u18", "u19"):
        tonight.keep_unseen(user_id)
    tonight.changed = True
    return tonight


def test_an_overlay_holds_only_the_users_not_in_the_base_as_they_are() -> None:
    base_blob, snapshot = _last_night()
    tonight = _tonight(snapshot)
    tonight.plan(same_context=True, written=0)
    assert tonight.overlay
    assert tonight.carried_users == 14  # the unseen deleted users are remembered, not carried
    tonight.seal_unwritten()
    blob = tonight.blob([], {})
    assert blob is not None
    assert sorted(decode(blob).entries) == ["u16", "u3", "u5"]
    remembered = decode(base_blob, blob)
    assert sorted(remembered.entries) == sorted(snapshot.entries)
    for user_id, entry in snapshot.entries.items():
        assert remembered.entries[user_id][:4] == entry[:4]
        assert remembered.state_bytes(user_id) == snapshot.state_bytes(user_id)


def test_a_night_writing_many_users_or_in_another_context_writes_a_new_base() -> None:
    _, snapshot = _last_night()
    assert NextSnapshot.OVERLAY_SHARE == 0.25  # 20 users: an overlay of at most 5 (3 already differ from the base)
    for same_context, written, overlay in ((True, 1, True), (True, 3, False), (False, 0, False)):
        tonight = _tonight(snapshot)
        tonight.plan(same_context=same_context, written=written)
        assert tonight.overlay is overlay, (same_context, written)
    tonight.seal_unwritten()
    blob = tonight.blob([], {})
    assert blob is not None
    assert sorted(decode(blob).entries) == sorted(snapshot.entries)  # a base: everyone
