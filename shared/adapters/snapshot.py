"""The sync's snapshot: every remembered user in a few large rows, so a night need not read 100,000.

The state rows (``MfaUsers`` ``s|<id>``) stay the source of truth. After each completed sync the
sync also writes, into partition ``snapshot`` of ``MfaUsers``, one compressed blob holding per
user: the fingerprints and profile of ``shared.domain.steady``, whether the user is steady or
deleted, and the state row itself (its properties, compactly, with its ETag). The next night loads
that blob (about 17 rows for 100,000 users) instead of the state rows, skips the steady users
whose Graph objects did not change, and takes everyone else's remembered state from the blob.

Most nights change few users, so a night writes either a *base* (everyone) or, while at most a
quarter of the users differ from the base, only an *overlay* on it: the users whose entry is not
the base's (recomputed tonight, or in last night's overlay), which replace the base's users on
load. Both are the same blob format; the head names the base's slot and the overlay's.

Trust, and when it is withdrawn (docs/table-schema.md has the table view):

- The ``head`` row says which rows hold the base and the overlay (slot 0 or 1 each, alternating,
  so a half-written blob never replaces a whole one), their lengths and BLAKE2b digests, and the
  *context* they were computed in (``context_key``: the code of the rules, the scope policy, the
  trust policy, the registration source). A different context, a digest mismatch, a row missing: the sync logs why
  and loads the state rows instead, then writes a fresh snapshot.
- Before the first state row changes, the sync marks the head invalid (``Valid`` false, a write
  conditional on the head's ETag); only after every write succeeded does it write the new blob
  and a valid head (conditional on its own invalidation). A run that dies in between leaves the
  head invalid, and the next run reads the state rows. Two runs that overlap (an expired lease)
  cannot both validate: the second head write's condition fails.

Blob layout (format 3): an 8-byte little-endian length, then two zlib streams (level 1): the
*index*, of that length, and the *states*. The index is sections, each an 8-byte little-endian
length then the bytes: per group of users, their ids joined by newlines, one fixed-width record
per user (``<8s8sHBI``: user and report fingerprints, profile index, flags, state length), and
the group's states length; the last section is a JSON header (format, user count, group count,
profiles, state columns). The states stream is every group's states, in order, each a JSON array
of the state row's values in the header's column order. Two streams let a night start from the
index while the states still decompress (``SnapshotStore.load``). Groups let the sync compress
everyone it did not write while its transactions are on the wire (each page's carried users as
one group, ``Encoder.add_group``, then the recomputed ones, ``Encoder.seal``), and add the
written users, whose new ETags come back with the commit, after.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import logging
import struct
import sys
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import accumulate, compress, repeat, starmap
from operator import add, attrgetter, eq, itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from azure.data.tables.aio import TableClient

from shared.adapters import table_schema as schema
from shared.adapters import table_wire as wire
from shared.domain.census import Profile, profile_of
from shared.domain.records import StoredUser
from shared.domain.steady import FINGERPRINT_SIZE

log = logging.getLogger(__name__)

FORMAT = 3
PARTITION = schema.SNAPSHOT_PARTITION
HEAD_ROW = "head"
PART_BYTES = 64_000  # a binary property holds at most 64 KiB
PARTS_PER_ROW = 10  # 640,000 bytes, 853,336 in base64: an entity holds at most 1 MiB (Azurite counts the JSON)
ROWS_PER_TRANSACTION = 3  # a transaction's body holds at most 4 MiB (base64 makes 4/3)
STEADY, DELETED = 1, 2  # flags
NO_OVERLAY = -1
_RECORD = struct.Struct(f"<{FINGERPRINT_SIZE}s{FINGERPRINT_SIZE}sHBI")
_LENGTH = struct.Struct("<Q")
# The state row's properties that the snapshot leaves out (rebuilt from the id, or not needed to
# rebuild a StoredUser): what remains decodes with table_schema.stored_user_from_entity.
_LEFT_OUT = frozenset({"PartitionKey", "RowKey", "UserId", "UpnLower", "LastChanged", "LastRunId"})
_ETAG = "odata.etag"
_FLAGS = attrgetter("flags")

# The modules whose code decides a record, its profile and the snapshot's format: when any of
# them changes (an upgrade), remembered fingerprints and steadiness mean nothing.
_RULES = (
    "domain/normalize.py",
    "domain/records.py",
    "domain/scope.py",
    "domain/scope_rules.py",
    "domain/management_apps.py",
    "domain/deltas.py",
    "domain/census.py",
    "domain/steady.py",
    "adapters/table_schema.py",
    "adapters/snapshot.py",
    "adapters/graph.py",
)


def _code_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.blake2b(digest_size=16)
    for name in _RULES:
        try:
            digest.update((root / name).read_bytes())
        except OSError:  # cannot tell which code this is: never match a stored snapshot
            return "unreadable"
    return digest.hexdigest()


_CODE = _code_digest()


def context_key(settings: Mapping[str, Any]) -> str:
    """What a remembered fingerprint was computed under: this code, this Python, and the night's
    shared inputs (``settings``: plain JSON values, e.g. the scope policy and the trust policy)."""
    text = json.dumps(
        {"format": FORMAT, "python": list(sys.version_info[:2]), "code": _CODE, "settings": settings},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class SnapshotError(ValueError):
    """A stored snapshot that cannot be used (corrupt, truncated, another format)."""


class Remembered(NamedTuple):
    user_fp: bytes
    report_fp: bytes
    profile: int
    flags: int
    offset: int
    length: int

    @property
    def steady(self) -> bool:
        return bool(self.flags & STEADY)

    @property
    def deleted(self) -> bool:
        return bool(self.flags & DELETED)


class Snapshot:
    """A decoded snapshot: per user what was remembered, and their state on demand. The states
    may still be decompressing in a worker thread (``states`` waits for them): a night needs the
    entries first, and the states only for the users it recomputes."""

    def __init__(
        self,
        profiles: list[Profile],
        columns: list[str],
        entries: dict[str, Remembered],
        states: Future[bytes],
        steady: dict[str, Remembered],
        base_end: int,
    ) -> None:
        self.profiles, self.columns, self.entries = profiles, columns, entries
        self.steady = steady  # the entries flagged exactly STEADY
        self._states: bytes | Future[bytes] = states  # ``_join`` resolves it, or fails it with a SnapshotError
        self.base_end = base_end  # states before this offset are the base's

    @property
    def states(self) -> bytes:
        if isinstance(self._states, Future):
            self._states = self._states.result()
        return self._states

    def state_bytes(self, user_id: str) -> bytes | None:
        found = self.entries.get(user_id)
        return None if found is None else self.states[found.offset : found.offset + found.length]

    def stored(self, user_id: str) -> StoredUser | None:
        raw = self.state_bytes(user_id)
        return None if raw is None else decode_state(user_id, raw, self.columns)


# --- the codec ---------------------------------------------------------------------------------


def state_entity(stored: StoredUser) -> dict[str, Any]:
    """The state row's properties the snapshot keeps (with the row's ETag)."""
    entity = schema.user_entity(stored, run_id="", changed_at="")
    kept = {k: v for k, v in entity.items() if k not in _LEFT_OUT}
    if stored.etag is not None:
        kept[_ETAG] = stored.etag
    return kept


def decode_state(user_id: str, raw: bytes, columns: Sequence[str]) -> StoredUser:
    try:
        values = json.loads(raw)
    except ValueError as exc:
        raise SnapshotError(f"the remembered state of {user_id} is not JSON") from exc
    if not isinstance(values, list) or len(values) > len(columns):
        raise SnapshotError(f"the remembered state of {user_id} does not match the columns")
    entity = {name: value for name, value in zip(columns, values, strict=False) if value is not None}
    entity["UserId"] = user_id
    etag = entity.pop(_ETAG, None)
    return schema.stored_user_from_entity(entity, etag if isinstance(etag, str) else None)


class Encoder:
    """Builds a snapshot user by user (states as JSON arrays in a column order it grows).

    ``seal`` closes the users added so far into a compressed group (it may run in a worker thread,
    as long as nothing else touches the encoder meanwhile); ``blob`` seals the rest and adds the
    header."""

    def __init__(self, profiles: Sequence[Profile] = (), columns: Sequence[str] = ()) -> None:
        self.profiles: list[Profile] = list(profiles)
        self._profile_index = {p: i for i, p in enumerate(self.profiles)}
        self.columns: list[str] = list(columns)
        self._column_index = {c: i for i, c in enumerate(self.columns)}
        self._ids: list[str] = []
        self._records: list[bytes] = []
        self._states: list[bytes] = []
        self._users = 0
        self._groups = 0
        self._index = zlib.compressobj(1)  # ids, records, each group's states length, the header
        self._indexed: list[bytes] = []
        self._states_z = zlib.compressobj(1)  # every group's states, in order
        self._stated: list[bytes] = []

    def profile(self, profile: Profile) -> int:
        index = self._profile_index.get(profile)
        if index is None:
            if len(self.profiles) >= 65_535:
                raise SnapshotError("more than 65,535 distinct profiles")
            index = self._profile_index[profile] = len(self.profiles)
            self.profiles.append(profile)
        return index

    def state(self, stored: StoredUser) -> bytes:
        entity = state_entity(stored)
        for name in entity:
            if name not in self._column_index:
                self._column_index[name] = len(self.columns)
                self.columns.append(name)
        values: list[Any] = [None] * len(self.columns)
        for name, value in entity.items():
            values[self._column_index[name]] = value
        while values and values[-1] is None:
            values.pop()
        return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()

    @property
    def pending_users(self) -> int:
        """Users added since the last seal."""
        return len(self._ids)

    def add_raw(self, user_id: str, user_fp: bytes, report_fp: bytes, profile: int, flags: int, state: bytes) -> None:
        """A user whose state is already encoded (in this encoder's columns)."""
        if "\n" in user_id:
            raise SnapshotError("a user id with a line break cannot be remembered")
        self._ids.append(user_id)
        self._records.append(_RECORD.pack(user_fp, report_fp, profile, flags, len(state)))
        self._states.append(state)

    def add(self, stored: StoredUser, user_fp: bytes, report_fp: bytes, steady: bool) -> None:
        flags = (STEADY if steady else 0) | (DELETED if stored.deleted else 0)
        profile = 0 if stored.deleted else self.profile(profile_of(stored.record))
        self.add_raw(stored.record.id, user_fp, report_fp, profile, flags, self.state(stored))

    def add_group(self, ids: Sequence[str], records: bytes, states: bytes) -> None:
        """Compress a whole group of remembered users at once (``remembered_group`` makes its
        records and states). Like ``seal``, it may run in a worker thread as long as nothing else
        touches the encoder meanwhile."""
        if not ids:
            return
        self._section("\n".join(ids).encode())
        self._section(records)
        self._section(_LENGTH.pack(len(states)))
        self._stated.append(self._states_z.compress(states))
        self._users += len(ids)
        self._groups += 1

    def seal(self) -> None:
        """Compress the users added since the last seal as one group (nothing if there are none)."""
        if not self._ids:
            return
        self._section("\n".join(self._ids).encode())
        self._section(b"".join(self._records))
        self._section(_LENGTH.pack(sum(len(s) for s in self._states)))
        for start in range(0, len(self._states), 4096):
            self._stated.append(self._states_z.compress(b"".join(self._states[start : start + 4096])))
        self._users += len(self._ids)
        self._groups += 1
        self._ids, self._records, self._states = [], [], []

    def _section(self, data: bytes) -> None:
        self._indexed.append(self._index.compress(_LENGTH.pack(len(data)) + data))

    def blob(self) -> bytes:
        """The whole snapshot; the encoder is spent after it."""
        self.seal()
        header = json.dumps(
            {
                "format": FORMAT,
                "users": self._users,
                "groups": self._groups,
                "profiles": [p.to_json() for p in self.profiles],
                "columns": self.columns,
            },
            separators=(",", ":"),
        ).encode()
        self._section(header)
        index = b"".join([*self._indexed, self._index.flush()])
        return b"".join([_LENGTH.pack(len(index)), index, *self._stated, self._states_z.flush()])


def decode(*blobs: bytes) -> Snapshot:
    """A snapshot from its blob, or from a base blob and the overlay on it: their users are the
    base's, replaced and added to by the overlay's. An overlay is encoded with the base's profiles
    and columns, which it may only extend. (``SnapshotStore.load`` does the same, row by row and
    with the states behind; here all of it at once.)"""
    inflaters = []
    for blob in blobs:
        inflate = _Inflater()
        inflate.feed(blob)
        inflate.finish()
        inflaters.append(inflate)
    states: Future[bytes] = Future()
    snapshot, ends = decode_index([inflate.index.result() for inflate in inflaters], states)
    _join(states, [inflate.states for inflate in inflaters], ends)
    snapshot.states  # noqa: B018 - states that cannot be read say so now, not later
    return snapshot


def decode_index(indexes: Sequence[bytes], states: Future[bytes]) -> tuple[Snapshot, list[int]]:
    """A snapshot from its blobs' decompressed indexes (a base, then optionally an overlay) and
    the future of their states, joined; and where each blob's states end in those."""
    with _gc_paused():  # 100,000 entries built at once, none in a cycle: the cyclic GC has nothing to find
        return _decode(indexes, states)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _decode(indexes: Sequence[bytes], states: Future[bytes]) -> tuple[Snapshot, list[int]]:
    """The snapshot, and where each blob's states end in the joined states."""
    entries: dict[str, Remembered] = {}
    profiles: list[Profile] = []
    columns: list[str] = []
    at = 0
    ends = []
    for raw in indexes:
        blob_entries: dict[str, Remembered] = {}
        header, groups = _header_and_groups(memoryview(raw))
        blob_profiles = [Profile.from_json(p) for p in header.get("profiles", [])]
        blob_columns = header.get("columns")
        if not isinstance(blob_columns, list) or not all(isinstance(c, str) for c in blob_columns):
            raise SnapshotError("the snapshot's columns are not a list of names")
        if blob_profiles[: len(profiles)] != profiles or blob_columns[: len(columns)] != columns:
            raise SnapshotError("the snapshot's overlay does not extend its base's profiles and columns")
        profiles, columns = blob_profiles, blob_columns
        users = 0
        for g in range(0, len(groups), 3):
            ids = str(groups[g], "utf-8").split("\n")
            if len(groups[g + 1]) != _RECORD.size * len(ids) or len(groups[g + 2]) != _LENGTH.size:
                raise SnapshotError("the snapshot's user count does not match its sections")
            remembered, end = _group_entries(groups[g + 1], at, len(profiles))
            if end - at != _LENGTH.unpack(groups[g + 2])[0]:
                raise SnapshotError("the snapshot's states do not add up")
            blob_entries.update(zip(ids, remembered, strict=True))
            users += len(ids)
            at = end
        if users != header.get("users"):
            raise SnapshotError("the snapshot's user count does not match its sections")
        if len(blob_entries) != users:
            raise SnapshotError("the snapshot lists a user twice")
        entries.update(blob_entries)  # an overlay's users replace the base's
        ends.append(at)
    steady = dict(compress(entries.items(), map(eq, map(_FLAGS, entries.values()), repeat(STEADY))))
    return Snapshot(profiles, columns, entries, states, steady, ends[0] if ends else 0), ends


def _header_and_groups(raw: memoryview) -> tuple[dict[str, Any], list[memoryview]]:
    sections = list(_sections(raw))
    if not sections:
        raise SnapshotError("the snapshot is empty")
    try:
        header = json.loads(bytes(sections[-1]))
    except ValueError as exc:
        raise SnapshotError("the snapshot header is not JSON") from exc
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise SnapshotError(f"the snapshot is not format {FORMAT}")
    groups = sections[:-1]
    if len(groups) % 3 or len(groups) // 3 != header.get("groups"):
        raise SnapshotError("the snapshot's groups do not match its header")
    return header, groups


def _group_entries(records: memoryview, at: int, profiles: int) -> tuple[list[Remembered], int]:
    """One group's entries, their states starting at ``at``, and where its states end. Built in
    passes that call no Python code per user: 100,000 users load in a few hundredths of a second."""
    fields = list(zip(*_RECORD.iter_unpack(records), strict=True))
    if not fields:
        return [], at
    user_fps, report_fps, profile_ids, flags, lengths = fields
    offsets = list(accumulate(lengths, initial=at))
    end = offsets.pop()
    if max(profile_ids) >= profiles and any(
        p >= profiles and not f & DELETED for p, f in zip(profile_ids, flags, strict=True)
    ):
        raise SnapshotError("a remembered user names a profile the snapshot does not hold")
    rows = zip(user_fps, report_fps, profile_ids, flags, offsets, lengths, strict=True)
    return list(map(tuple.__new__, repeat(Remembered), rows)), end


def _sections(raw: memoryview) -> Iterator[memoryview]:
    at = 0
    while at < len(raw):
        if at + _LENGTH.size > len(raw):
            raise SnapshotError("the snapshot is truncated")
        (length,) = _LENGTH.unpack_from(raw, at)
        at += _LENGTH.size
        if at + length > len(raw):
            raise SnapshotError("the snapshot is truncated")
        yield raw[at : at + length]
        at += length


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Head:
    etag: str | None  # None: no head row yet
    valid: bool = False
    context: str = ""
    slot: int = 0  # the base blob: its slot, rows, length and digest
    rows: int = 0
    length: int = 0
    digest: str = ""
    overlay: int = NO_OVERLAY  # the overlay blob on the base (its slot; NO_OVERLAY: none), and so on
    overlay_rows: int = 0
    overlay_length: int = 0
    overlay_digest: str = ""


def _part_name(i: int) -> str:
    return f"P{i:02d}"


def _row_key(slot: int, n: int) -> str:
    return f"{slot}|{n:05d}"


def _overlay_key(slot: int, n: int) -> str:
    return f"o{slot}|{n:05d}"


class SnapshotStore:
    """Reads and writes the snapshot rows. Counts entities read and written into ``counters``
    (any object with ``reads``, ``writes`` and ``batches``)."""

    def __init__(self, users: TableClient, counters: Any) -> None:
        self.users, self.counters = users, counters

    async def head(self) -> Head:
        entity = await wire.get_entity(self.users, PARTITION, HEAD_ROW)
        if entity is None:
            return Head(etag=None)
        self.counters.reads += 1
        return Head(
            etag=entity.get(_ETAG),
            valid=entity.get("Valid") is True,
            context=str(entity.get("Context", "")),
            slot=int(entity.get("Slot", 0)),
            rows=int(entity.get("Rows", 0)),
            length=int(entity.get("Bytes", 0)),
            digest=str(entity.get("Digest", "")),
            overlay=int(entity.get("Overlay", NO_OVERLAY)),
            overlay_rows=int(entity.get("OverlayRows", 0)),
            overlay_length=int(entity.get("OverlayBytes", 0)),
            overlay_digest=str(entity.get("OverlayDigest", "")),
        )

    async def load(self, head: Head, context: str) -> Snapshot:
        """The snapshot ``head`` names (its base, and its overlay if it has one); SnapshotError
        says why it cannot be used."""
        if head.etag is None:
            raise SnapshotError("no snapshot yet")
        if not head.valid:
            raise SnapshotError("the last run that changed users did not finish writing its snapshot")
        if head.context != context:
            raise SnapshotError("the snapshot was computed by other code or other settings")
        blobs = [([_row_key(head.slot, n) for n in range(head.rows)], head.length, head.digest)]
        if head.overlay != NO_OVERLAY:
            keys = [_overlay_key(head.overlay, n) for n in range(head.overlay_rows)]
            blobs.append((keys, head.overlay_length, head.overlay_digest))
        # One worker thread decompresses, blob by blob and row by row in the order they come,
        # while the rows still arrive (zlib lets go of the GIL). The index of each blob is all the
        # night needs to start; the states go on decompressing behind it.
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-inflate")
        try:
            reading = [
                asyncio.ensure_future(self._read(keys, length, digest, thread)) for keys, length, digest in blobs
            ]
            try:
                inflaters = [await read for read in reading]
            finally:
                for read in reading:
                    read.cancel()
                await asyncio.gather(*reading, return_exceptions=True)
            indexes = [await asyncio.wrap_future(inflate.index) for inflate in inflaters]
            states: Future[bytes] = Future()
            snapshot, ends = decode_index(indexes, states)
            thread.submit(_join, states, [inflate.states for inflate in inflaters], ends)
        finally:
            thread.shutdown(wait=False)
        return snapshot

    async def _read(self, keys: Sequence[str], length: int, digest: str, thread: ThreadPoolExecutor) -> _Inflater:
        """One blob's rows, all asked for at once, each checked (length and digest, here) and handed
        to ``thread`` to decompress in order as it arrives."""
        reads = [asyncio.ensure_future(wire.get_entity(self.users, PARTITION, key)) for key in keys]
        inflate = _Inflater()
        hashed = hashlib.blake2b(digest_size=16)
        got = 0
        try:
            for key, read in zip(keys, reads, strict=True):
                entity = await read
                if entity is None:
                    raise SnapshotError(f"snapshot row {key} is missing")
                self.counters.reads += 1
                chunk = b"".join(_parts(entity))
                hashed.update(chunk)
                got += len(chunk)
                thread.submit(inflate.feed, chunk)
        finally:
            for read in reads:
                read.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
        if got != length or hashed.hexdigest() != digest:
            raise SnapshotError("the snapshot rows do not match their head (partly overwritten?)")
        thread.submit(inflate.finish)
        return inflate

    async def invalidate(self, head: Head) -> Head:
        """Mark the snapshot stale before the first state row changes (where its blobs lie stays
        on the head row: tonight's overlay may still build on the base)."""
        stale = replace(head, valid=False)
        etag = await self._put_head(_head_entity(stale, run_id=None), head.etag)
        return replace(stale, etag=etag)

    async def save(self, head: Head, blob: bytes, context: str, run_id: str) -> Head:
        """Write ``blob`` as a new base into the slot ``head`` does not name, then a valid head
        without an overlay (conditional on ``head``'s ETag)."""
        slot = 1 - head.slot if head.etag is not None else 0
        rows = await self._write(blob, lambda n: _row_key(slot, n))
        new = Head(head.etag, True, context, slot, rows, len(blob), _digest(blob))
        return replace(new, etag=await self._put_head(_head_entity(new, run_id), head.etag))

    async def save_overlay(self, head: Head, blob: bytes, context: str, run_id: str) -> Head:
        """Write ``blob`` as the overlay on ``head``'s base, into the overlay slot ``head`` does not
        name, then a valid head naming both (conditional on ``head``'s ETag)."""
        if head.etag is None or not head.rows or head.context != context:
            raise SnapshotError("an overlay needs the base it was computed on")
        slot = 1 - head.overlay if head.overlay != NO_OVERLAY else 0
        rows = await self._write(blob, lambda n: _overlay_key(slot, n))
        new = replace(
            head,
            valid=True,
            overlay=slot,
            overlay_rows=rows,
            overlay_length=len(blob),
            overlay_digest=_digest(blob),
        )
        return replace(new, etag=await self._put_head(_head_entity(new, run_id), head.etag))

    async def _write(self, blob: bytes, key: Callable[[int], str]) -> int:
        """The blob's rows (upserted, a few to a transaction); how many there are."""
        pieces = [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)]
        rows = []
        for n, start in enumerate(range(0, len(pieces), PARTS_PER_ROW)):
            entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": key(n)}
            for i, piece in enumerate(pieces[start : start + PARTS_PER_ROW]):
                entity[_part_name(i)] = piece
            rows.append(entity)
        for start in range(0, len(rows), ROWS_PER_TRANSACTION):
            chunk = rows[start : start + ROWS_PER_TRANSACTION]
            await wire.submit_batch(self.users, [wire.BatchOp("upsert", r) for r in chunk])
            self.counters.batches += 1
            self.counters.writes += len(chunk)
        return len(rows)

    async def _put_head(self, entity: dict[str, Any], etag: str | None) -> str | None:
        op = wire.BatchOp("update", entity, etag) if etag is not None else wire.BatchOp("create", entity)
        etags = await wire.submit_batch(self.users, [op])
        self.counters.batches += 1
        self.counters.writes += 1
        return etags[0] if etags else None


def _head_entity(head: Head, run_id: str | None) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "PartitionKey": PARTITION,
        "RowKey": HEAD_ROW,
        "Valid": head.valid,
        "Context": head.context,
        "Slot": head.slot,
        "Rows": head.rows,
        "Bytes": head.length,
        "Digest": head.digest,
        "Overlay": head.overlay,
        "OverlayRows": head.overlay_rows,
        "OverlayBytes": head.overlay_length,
        "OverlayDigest": head.overlay_digest,
    }
    if run_id is not None:
        entity["RunId"] = run_id
    return entity


def _parts(entity: Mapping[str, Any]) -> Iterator[bytes]:
    for i in range(PARTS_PER_ROW):
        part = wire.binary_value(entity, _part_name(i))
        if part is None:
            return
        yield part


class _Inflater:
    """A blob's two streams (its index, then its states) decompressed from its bytes, fed in
    order, in one worker thread. ``index`` is ready as soon as the index stream ends; ``states``
    once ``finish`` ran. Either holds a SnapshotError if its stream does not decompress."""

    def __init__(self) -> None:
        self.index: Future[bytes] = Future()
        self.states: Future[bytes] = Future()
        self._head = bytearray()  # the blob's first bytes, until the index stream's length is known
        self._index_left = -1
        self._index_z = zlib.decompressobj()
        self._states_z = zlib.decompressobj()
        self._index_raw = bytearray()
        self._states_raw = bytearray()
        self._error: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self._error is not None:
            return
        try:
            if self._index_left < 0:
                self._head += chunk
                if len(self._head) < _LENGTH.size:
                    return
                (self._index_left,) = _LENGTH.unpack_from(self._head)
                chunk = bytes(self._head[_LENGTH.size :])
                self._head.clear()
                if self._index_left == 0:
                    self._end_index()
            if self._index_left > 0:
                part, chunk = chunk[: self._index_left], chunk[self._index_left :]
                self._index_left -= len(part)
                self._index_raw += self._index_z.decompress(part)
                if self._index_left == 0:
                    self._end_index()
            if chunk:
                self._states_raw += self._states_z.decompress(chunk)
        except Exception as exc:  # never leave a future unresolved: the loader would wait forever
            self._fail(_why(exc))

    def _end_index(self) -> None:
        self._index_raw += self._index_z.flush()
        if not self._index_z.eof or self._index_z.unused_data:
            raise SnapshotError("the index stream is cut short or runs on")
        self.index.set_result(bytes(self._index_raw))
        self._index_raw = bytearray()

    def finish(self) -> None:
        """After the last chunk: the states, or why there are none."""
        if self._error is None:
            try:
                if self._index_left != 0:
                    raise SnapshotError("the blob ends inside its index")
                self._states_raw += self._states_z.flush()
                if not self._states_z.eof or self._states_z.unused_data:
                    raise SnapshotError("the stream is cut short or runs on")
                self.states.set_result(bytes(self._states_raw))
                return
            except Exception as exc:
                self._fail(_why(exc))
        self._states_raw = bytearray()

    def _fail(self, why: str) -> None:
        self._error = why
        error = SnapshotError(f"the snapshot does not decompress: {why}")
        for future in (self.index, self.states):
            if not future.done():
                future.set_exception(error)


def _why(exc: Exception) -> str:
    return str(exc) if isinstance(exc, zlib.error | SnapshotError) else f"{type(exc).__name__}: {exc}"


def _join(into: Future[bytes], parts: list[Future[bytes]], ends: list[int]) -> None:
    """The blobs' states, joined, into ``into`` (in the worker thread, after their ``finish``),
    or why they cannot be: a stream that did not decompress, or states that do not add up."""
    try:
        states = [part.result() for part in parts]
        if list(accumulate(map(len, states))) != ends:
            raise SnapshotError("the snapshot's states do not add up")
        into.set_result(states[0] if len(states) == 1 else b"".join(states))
    except SnapshotError as exc:
        into.set_exception(exc)
    except Exception as exc:
        into.set_exception(SnapshotError(f"the snapshot's states could not be read: {type(exc).__name__}: {exc}"))


def _digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


_PACKED = itemgetter(0, 1, 2, 3, 5)  # a Remembered as its record packs it: all but the offset
_OFFSET = attrgetter("offset")
_END = attrgetter("offset", "length")


def remembered_group(snapshot: Snapshot, entries: Sequence[Remembered]) -> tuple[bytes, bytes]:
    """The records and the states of remembered users, as a group holds them (for
    ``Encoder.add_group``), in passes that call no Python code per user."""
    records = b"".join(starmap(_RECORD.pack, map(_PACKED, entries)))
    starts = map(_OFFSET, entries)
    ends = starmap(add, map(_END, entries))
    return records, b"".join(map(snapshot.states.__getitem__, map(slice, starts, ends)))
