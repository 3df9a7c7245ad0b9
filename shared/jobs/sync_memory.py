"""What the sync remembers between nights, and what it will remember after tonight.

``load_memory`` gives last night's users: from the snapshot (``shared.adapters.snapshot``) when
one is valid, otherwise from the state rows (the first night, after a crash, or when the
snapshot cannot be read; the reason is logged). ``Memory.fast`` says whether the snapshot's
fingerprints may be trusted tonight (same code, same policies: ``context``).

``NextSnapshot`` collects tonight's users as the sync settles them (carried unchanged, recomputed,
or written), decides whether tonight's blob is a new base or an overlay on the snapshot's base
(``plan``: an overlay while few users differ from the base), compresses all but the written
ones while the commit runs (for an overlay, only those not in the base as they are), and after
it adds the written ones with their new ETags: the blob the store saves.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import attrgetter, ge
from typing import ClassVar

from shared.adapters.snapshot import (
    STEADY,
    Encoder,
    Head,
    Remembered,
    Snapshot,
    SnapshotError,
    context_key,
    remembered_group,
)
from shared.adapters.state_store import StateStore
from shared.domain.census import Census
from shared.domain.records import StoredUser
from shared.domain.scope_rules import GuestTrust, ScopePolicy
from shared.domain.steady import NO_ROW

log = logging.getLogger(__name__)
_PROFILE = attrgetter("profile")
_OFFSET = attrgetter("offset")


def _in_overlay(snapshot: Snapshot, entries: list[Remembered]) -> list[bool]:
    """For each entry, whether it is not the base's (it came from the snapshot's overlay)."""
    return list(map(ge, map(_OFFSET, entries), repeat(snapshot.base_end)))


def context(policy: ScopePolicy | None, trust: GuestTrust | None, fallback: bool) -> str:
    """The shared inputs a fingerprint is only valid under (plus the code: ``context_key``)."""
    if policy is None:
        return context_key({"scope": None})
    return context_key(
        {
            "policy": {
                "lookback_days": policy.lookback_days,
                "memory_days": policy.memory_days,
                "guests_in_scope": policy.guests_in_scope,
                "filters": sorted(policy.filters),
                "upn_patterns": list(policy.upn_patterns),
            },
            "trust": None
            if trust is None
            else {
                "default": trust.default_mfa_accepted,
                "partners": sorted((k, v) for k, v in trust.partners.items()),
            },
            "fallback": fallback,
        }
    )


@dataclass
class Memory:
    """Last night's users, from the snapshot or from every state row."""

    head: Head
    snapshot: Snapshot | None = None
    users: dict[str, StoredUser] | None = None

    def fast(self, context_now: str) -> bool:
        return self.snapshot is not None and self.head.context == context_now

    def entry(self, user_id: str) -> Remembered | None:
        return self.snapshot.entries.get(user_id) if self.snapshot is not None else None

    def stored(self, user_id: str) -> StoredUser | None:
        if self.snapshot is not None:
            return self.snapshot.stored(user_id)
        assert self.users is not None
        return self.users.get(user_id)

    def unseen(self, seen: set[str]) -> Iterator[tuple[str, bool]]:
        """(id, already deleted) of every remembered user tonight's pull did not list."""
        if self.snapshot is not None:
            for user_id, e in self.snapshot.entries.items():
                if user_id not in seen:
                    yield user_id, e.deleted
        else:
            assert self.users is not None
            for user_id, stored in self.users.items():
                if user_id not in seen:
                    yield user_id, stored.deleted


async def load_memory(store: StateStore) -> Memory:
    head = await store.snapshot.head()
    try:
        snapshot = await store.snapshot.load(head, head.context)
    except SnapshotError as exc:
        why = str(exc)
    except Exception as exc:  # a snapshot that cannot be read must never stop the sync
        why = f"{type(exc).__name__}: {exc}"
    else:
        return Memory(head, snapshot=snapshot)
    if head.etag is not None:
        log.warning("reading every state row instead of the snapshot: %s", why)
    return Memory(head, users=await store.load_users())


@dataclass(frozen=True, slots=True)
class Fingerprints:
    user: bytes
    report: bytes = NO_ROW


@dataclass
class NextSnapshot:
    """Tonight's users as they will be remembered (see the module doc)."""

    memory: Memory
    encoder: Encoder = field(init=False)
    carried_ids: list[str] = field(default_factory=list)  # carried one by one
    unseen_ids: list[str] = field(default_factory=list)  # remembered as they are, absent tonight
    carried_pages: list[tuple[list[str], list[Remembered]]] = field(default_factory=list)  # a page's at once
    fast_profiles: Counter[int] = field(default_factory=Counter)
    pending: dict[str, tuple[Fingerprints, bool]] = field(default_factory=dict)
    changed: bool = False  # anything remembered differs from last night
    overlay: bool = False  # tonight's blob is an overlay on the snapshot's base (``plan``)
    # An overlay while it holds at most this share of the users; beyond, a new base is written.
    OVERLAY_SHARE: ClassVar[float] = 0.25

    def __post_init__(self) -> None:
        s = self.memory.snapshot
        self.encoder = Encoder(s.profiles, s.columns) if s is not None else Encoder()
        self.changed = s is None

    def carry(self, user_id: str, entry: Remembered) -> None:
        """A steady user with the same objects: counted from the profile, remembered as is."""
        self.carried_ids.append(user_id)
        self.fast_profiles[entry.profile] += 1

    def carry_all(self, user_ids: list[str], entries: list[Remembered]) -> None:
        """``carry`` for many users at once (``shared.jobs.unchanged`` finds them a page at a time)."""
        self.carried_pages.append((user_ids, entries))
        self.fast_profiles.update(map(_PROFILE, entries))

    @property
    def carried_users(self) -> int:
        return len(self.carried_ids) + sum(len(user_ids) for user_ids, _ in self.carried_pages)

    def count_carried(self, census: Census) -> None:
        snapshot = self.memory.snapshot
        if snapshot is None:
            return
        for index, n in self.fast_profiles.items():
            census.count_profile(snapshot.profiles[index], n)

    def keep(self, stored: StoredUser, prints: Fingerprints, steady: bool) -> None:
        """A recomputed user whose stored row stays as it is."""
        old = self.memory.entry(stored.record.id)
        raw = self.memory.snapshot.state_bytes(stored.record.id) if self.memory.snapshot is not None else None
        if old is not None and raw is not None and not old.deleted:
            flags = STEADY if steady else 0
            if (old.user_fp, old.report_fp, old.flags) != (prints.user, prints.report, flags):
                self.changed = True
            self.encoder.add_raw(stored.record.id, prints.user, prints.report, old.profile, flags, raw)
            return
        self.changed = True
        self.encoder.add(stored, prints.user, prints.report, steady)

    def will_write(self, user_id: str, prints: Fingerprints, steady: bool) -> None:
        """A user whose row tonight's commit writes (their new ETag comes with the commit)."""
        self.pending[user_id] = (prints, steady)
        self.changed = True

    def keep_unseen(self, user_id: str) -> None:
        """A remembered user already deleted, still absent."""
        if self.memory.snapshot is not None:
            self.unseen_ids.append(user_id)
            return
        stored = self.memory.stored(user_id)
        if stored is not None:
            self.encoder.add(stored, NO_ROW, NO_ROW, False)

    def plan(self, same_context: bool, written: int) -> None:
        """Decide, once the pull is done, whether tonight's blob is an overlay on the snapshot's
        base (``same_context``: tonight's context is the one the base was computed in): only the
        users whose entry differs from the base's (recomputed tonight, or in last night's overlay)
        are written then, while they are few. ``written``: the users tonight's commit writes
        (recomputed or deleted)."""
        snapshot = self.memory.snapshot
        self.overlay = False
        if snapshot is None or not same_context:
            return
        users = self.encoder.pending_users + written
        users += sum(sum(_in_overlay(snapshot, entries)) for _, entries in self._as_remembered(snapshot))
        self.overlay = users <= self.OVERLAY_SHARE * len(snapshot.entries)

    def _as_remembered(self, snapshot: Snapshot) -> Iterator[tuple[list[str], list[Remembered]]]:
        """The users remembered as they were, in groups: each page's carried users, then those
        carried one by one and the unseen deleted ones."""
        yield from self.carried_pages
        ids = self.carried_ids + self.unseen_ids
        yield ids, [snapshot.entries[user_id] for user_id in ids]

    def seal_unwritten(self) -> None:
        """Copy in the carried users and compress everyone so far: all but the users the commit
        writes (for an overlay, only those not in the base as they are). Runs in a worker thread
        during the commit, which touches nothing of this."""
        snapshot = self.memory.snapshot
        if snapshot is not None:
            for user_ids, entries in self._as_remembered(snapshot):
                if self.overlay:
                    beyond = _in_overlay(snapshot, entries)
                    user_ids, entries = list(compress(user_ids, beyond)), list(compress(entries, beyond))
                self.encoder.add_group(user_ids, *remembered_group(snapshot, entries))
        self.encoder.seal()

    def blob(self, written: Iterable[StoredUser], etags: dict[str, str | None]) -> bytes | None:
        """The snapshot to save after the commit (``seal_unwritten`` first); None when a written
        row's ETag is unknown."""
        for stored in written:
            user_id = stored.record.id
            etag = etags.get(user_id)
            if etag is None:
                log.warning("no ETag came back for a written user: no snapshot tonight")
                return None
            prints, steady = self.pending.get(user_id, (Fingerprints(NO_ROW), False))
            self.encoder.add(
                StoredUser(stored.record, stored.version, etag, stored.deleted, stored.first_seen),
                prints.user,
                prints.report,
                steady,
            )
        return self.encoder.blob()
