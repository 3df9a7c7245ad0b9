"""The snapshot blob: what goes in comes out, and a damaged one is refused with a reason."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from shared.adapters.snapshot import DELETED, STEADY, Encoder, SnapshotError, context_key, decode, remembered_group
from shared.domain.census import profile_of
from shared.domain.normalize import person_from_graph
from shared.domain.records import StoredUser
from shared.domain.scope_rules import NO_EVIDENCE, GuestTrust, ScopePolicy, assess
from shared.domain.steady import fingerprint
from tests.unit.tenant_records import tenant_records

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def _stored_users() -> list[StoredUser]:
    users = []
    for i, (obj, record) in enumerate(tenant_records(300, seed=4)):
        if i % 4:
            facts = assess(record, person_from_graph(obj), NO_EVIDENCE, None, ScopePolicy(), GuestTrust(), NOW).facts
            record = replace(record, scope=facts)
        if i % 9 == 0:
            memory = (("azure_cli", "2026-11-20T10:00:00Z"), ("azure_portal", "2026-11-21T10:00:00Z"))
            scope = replace(record.scope, known=True, tool_last_seen=memory, tools=("azure_cli",))
            record = replace(record, scope=scope)
        users.append(
            StoredUser(
                record=record,
                version=1 + i % 5,
                etag=f"W/\"datetime'2026-11-23T02%3A00%3A{i % 60:02d}.1Z'\"",
                deleted=i % 17 == 0,
                first_seen="2026-11-01T02:00:00+00:00" if i % 2 else None,
            )
        )
    return users


def test_every_user_comes_back_exactly() -> None:
    users = _stored_users()
    encoder = Encoder()
    for i, u in enumerate(users):
        encoder.add(u, fingerprint({"u": i}), fingerprint({"r": i}), steady=i % 3 == 0)
    snapshot = decode(encoder.blob())
    assert len(snapshot.entries) == len(users)
    for i, u in enumerate(users):
        entry = snapshot.entries[u.record.id]
        assert snapshot.stored(u.record.id) == u
        assert (entry.user_fp, entry.report_fp) == (fingerprint({"u": i}), fingerprint({"r": i}))
        assert entry.steady == (i % 3 == 0)
        assert entry.deleted == u.deleted
        if not u.deleted:
            assert snapshot.profiles[entry.profile] == profile_of(u.record)
    assert snapshot.stored("not-a-user") is None
    # the index of steady users (what tonight may carry) leaves out the deleted ones
    assert users[0].deleted and snapshot.entries[users[0].record.id].flags == STEADY | DELETED
    expected = {k: e for k, e in snapshot.entries.items() if e.steady and not e.deleted}
    assert snapshot.steady == expected
    assert len(expected) == sum(1 for i, u in enumerate(users) if i % 3 == 0 and not u.deleted)


def test_carried_users_keep_their_bytes_and_new_columns_extend_old_states() -> None:
    users = _stored_users()
    first = Encoder()
    for u in users[:100]:
        first.add(u, b"u" * 8, b"r" * 8, steady=True)
    old = decode(first.blob())
    second = Encoder(old.profiles, old.columns)
    ids = [u.record.id for u in users[:100]]
    second.add_group(ids, *remembered_group(old, [old.entries[i] for i in ids]))
    for u in users[100:]:
        second.add(u, b"v" * 8, b"s" * 8, steady=False)
    again = decode(second.blob())
    for u in users:
        assert again.stored(u.record.id) == u
    assert again.state_bytes(users[0].record.id) == old.state_bytes(users[0].record.id)
    assert again.entries[users[0].record.id].flags & STEADY
    assert again.entries[users[150].record.id].flags & STEADY == 0
    assert any(e.flags & DELETED for e in again.entries.values())


def test_an_empty_snapshot_is_fine() -> None:
    snapshot = decode(Encoder().blob())
    assert snapshot.entries == {} and snapshot.profiles == []


def _index(blob: bytes) -> bytes:
    """A format 3 blob's index, decompressed."""
    (length,) = struct.unpack_from("<Q", blob)
    return zlib.decompress(blob[8 : 8 + length])


def _with_index(blob: bytes, change: Callable[[bytes], bytes]) -> bytes:
    """The blob with its index changed (its states as they were)."""
    (length,) = struct.unpack_from("<Q", blob)
    index = zlib.compress(change(zlib.decompress(blob[8 : 8 + length])))
    return struct.pack("<Q", len(index)) + index + blob[8 + length :]


def _with_states(blob: bytes, change: Callable[[bytes], bytes]) -> bytes:
    (length,) = struct.unpack_from("<Q", blob)
    return blob[: 8 + length] + zlib.compress(change(zlib.decompress(blob[8 + length :])))


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda b: b[: len(b) // 2], "does not decompress"),
        (lambda b: b"not zlib at all", "does not decompress"),
        (lambda b: b[:5], "does not decompress"),
        (lambda b: _with_index(b, lambda i: i[:-5]), "truncated"),
        (lambda b: _with_index(b, lambda i: i + b"x"), "truncated"),
        (lambda b: _with_index(b, lambda i: i.replace(b'"format":3', b'"format":9', 1)), "not format 3"),
        (lambda b: _with_index(b, lambda i: i.replace(b'"groups":1', b'"groups":2', 1)), "groups"),
        (lambda b: _with_index(b, lambda i: i.replace(b'"users":20', b'"users":21', 1)), "user count"),
        (lambda b: _with_states(b, lambda s: s[:-1]), "states do not add up"),
        (lambda b: _with_states(b, lambda s: s + b" "), "states do not add up"),
        (lambda b: b + b"more", "does not decompress"),
    ],
)
def test_a_damaged_blob_is_refused_with_a_reason(damage, reason: str) -> None:  # type: ignore[no-untyped-def]
    encoder = Encoder()
    for u in _stored_users()[:20]:
        encoder.add(u, b"u" * 8, b"r" * 8, steady=True)
    with pytest.raises(SnapshotError, match=reason):
        decode(damage(encoder.blob()))


def test_groups_sealed_apart_decode_as_one_snapshot() -> None:
    users = _stored_users()
    encoder = Encoder()
    for u in users[:120]:
        encoder.add(u, b"u" * 8, b"r" * 8, steady=True)
    encoder.seal()
    encoder.seal()  # nothing added since: no empty group
    for u in users[120:]:  # later users may add columns and profiles the sealed group never saw
        encoder.add(u, b"v" * 8, b"s" * 8, steady=False)
    raw = _index(blob := encoder.blob())
    assert b'"groups":2' in raw
    snapshot = decode(blob)
    assert [snapshot.stored(u.record.id) for u in users] == users
    assert snapshot.entries[users[0].record.id].steady and not snapshot.entries[users[-1].record.id].steady


def test_a_user_id_with_a_line_break_is_refused() -> None:
    u = _stored_users()[0]
    with pytest.raises(SnapshotError, match="line break"):
        Encoder().add(replace(u, record=replace(u.record, id="a\nb")), b"u" * 8, b"r" * 8, steady=False)


def test_the_context_follows_the_settings() -> None:
    a = context_key({"policy": {"lookback_days": 30}})
    assert a == context_key({"policy": {"lookback_days": 30}})
    assert a != context_key({"policy": {"lookback_days": 31}})
    assert a != context_key({"scope": None})


def test_an_overlay_replaces_the_base_s_users_and_adds_new_ones() -> None:
    users = _stored_users()
    base = Encoder()
    for i, u in enumerate(users[:200]):
        base.add(u, fingerprint({"u": i}), fingerprint({"r": i}), steady=True)
    base_blob = base.blob()
    based = decode(base_blob)
    overlay = Encoder(based.profiles, based.columns)  # as NextSnapshot builds it on the base
    changed = [replace(u, version=u.version + 1) for u in users[:10]]
    for i, u in enumerate(changed + users[200:]):
        overlay.add(u, fingerprint({"o": i}), fingerprint({"r": i}), steady=False)
    snapshot = decode(base_blob, overlay.blob())
    assert len(snapshot.entries) == len(users)
    assert snapshot.base_end == len(based.states) < len(snapshot.states)
    for u in changed + users[200:]:  # the overlay's users, from the overlay's states
        assert snapshot.stored(u.record.id) == u
        assert snapshot.entries[u.record.id].offset >= snapshot.base_end
        assert u.record.id not in snapshot.steady
    for u in users[10:200]:  # the others, from the base's
        assert snapshot.stored(u.record.id) == u
        assert snapshot.entries[u.record.id] == based.entries[u.record.id]
    # An overlay encoded with other profiles or columns cannot be read on this base.
    stranger = Encoder()
    stranger.add(users[-1], fingerprint(1), fingerprint(2), steady=False)
    with pytest.raises(SnapshotError, match="does not extend its base"):
        decode(base_blob, stranger.blob())
