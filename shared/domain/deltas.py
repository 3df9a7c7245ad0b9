"""What changed for a user between two nights, and what to store because of it.

``reconcile`` compares last night's stored user with tonight's record and answers with the update
to write (new state plus the changes that explain it), or ``None`` when nothing worth a write
changed. ``deletions`` names the users a *complete* pull no longer lists. Both are pure.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from shared.domain.records import REGISTRATION_FIELDS, StoredUser, UserRecord
from shared.domain.scope import ScopeFacts, last_seen_refresh_due


class ChangeKind(StrEnum):
    NEW = "new"
    RESTORED = "restored"  # back from the directory's recycle bin
    REGISTERED = "registered"
    UNREGISTERED = "unregistered"  # lost every MFA method
    METHODS_CHANGED = "methods_changed"
    DISABLED = "disabled"
    ENABLED = "enabled"
    BECAME_ADMIN = "became_admin"
    NO_LONGER_ADMIN = "no_longer_admin"
    DELETED = "deleted"  # gone from the directory
    ENTERED_SCOPE = "entered_scope"  # now in scope of a phase they were not in scope of
    LEFT_SCOPE = "left_scope"  # no longer in scope of a phase they were in scope of


@dataclass(frozen=True, slots=True)
class Change:
    user_id: str
    kind: ChangeKind
    before: Mapping[str, object] | None
    after: Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class UserUpdate:
    """One user's write: the state to store and the changes (possibly none) that explain it."""

    stored: StoredUser
    changes: tuple[Change, ...]
    # The ETag the current row must still have (None: the row must not exist yet). A mismatch
    # means another run wrote this user meanwhile; the write is refused rather than overwriting.
    expected_etag: str | None


def summary(record: UserRecord) -> dict[str, object]:
    """The facts shown with a ``new``, ``restored`` or ``deleted`` change (with the scope phases
    and reasons once the scope signals have run)."""
    facts: dict[str, object] = {
        "upn": record.upn,
        "displayName": record.display_name,
        "userType": record.user_type.value,
        "enabled": record.enabled,
        "mfaRegistered": record.mfa_registered,
        "methods": list(record.methods),
        "isAdmin": record.is_admin,
    }
    if record.scope.known:
        facts.update(scope_summary(record.scope))
    return facts


def scope_summary(scope: ScopeFacts) -> dict[str, object]:
    """The before/after of an ``entered_scope`` or ``left_scope`` change."""
    return {"phases": [p.value for p in scope.phases], "reasons": list(scope.reasons)}


def carry_registration_forward(previous: UserRecord, current: UserRecord) -> UserRecord:
    """The report leaves out disabled users and lags new ones: a user it does not list tonight keeps
    the registration facts last known, rather than turning 'unregistered'."""
    if current.in_report:
        return current
    known = {name: getattr(previous, name) for name in REGISTRATION_FIELDS}
    return replace(current, **known)


def field_changes(previous: UserRecord, current: UserRecord) -> list[Change]:
    uid = current.id
    changes: list[Change] = []

    def reg(r: UserRecord) -> dict[str, object]:
        return {
            "mfaRegistered": r.mfa_registered,
            "methods": list(r.methods),
            "defaultMethod": r.default_method,
        }

    # Transitions out of "unknown" (never in the report) are not changes of the person: no event.
    if previous.mfa_registered is True and current.mfa_registered is False:
        changes.append(Change(uid, ChangeKind.UNREGISTERED, reg(previous), reg(current)))
    elif previous.mfa_registered is False and current.mfa_registered is True:
        changes.append(Change(uid, ChangeKind.REGISTERED, reg(previous), reg(current)))
    elif previous.mfa_registered is not None and previous.methods != current.methods:
        changes.append(Change(uid, ChangeKind.METHODS_CHANGED, reg(previous), reg(current)))

    if previous.enabled and not current.enabled:
        changes.append(Change(uid, ChangeKind.DISABLED, {"enabled": True}, {"enabled": False}))
    elif not previous.enabled and current.enabled:
        changes.append(Change(uid, ChangeKind.ENABLED, {"enabled": False}, {"enabled": True}))

    if previous.is_admin is False and current.is_admin is True:
        changes.append(Change(uid, ChangeKind.BECAME_ADMIN, {"isAdmin": False}, {"isAdmin": True}))
    elif previous.is_admin is True and current.is_admin is False:
        changes.append(Change(uid, ChangeKind.NO_LONGER_ADMIN, {"isAdmin": True}, {"isAdmin": False}))

    # Scope moves between two computed states only: the signals running for the first time (or a
    # run without them) is not a change of the person, like the report's first listing.
    before, after = previous.scope, current.scope
    if before.known and after.known:
        gained = set(after.phases) - set(before.phases)
        lost = set(before.phases) - set(after.phases)
        if gained:
            changes.append(Change(uid, ChangeKind.ENTERED_SCOPE, scope_summary(before), scope_summary(after)))
        if lost:
            changes.append(Change(uid, ChangeKind.LEFT_SCOPE, scope_summary(before), scope_summary(after)))
    return changes


def reconcile(previous: StoredUser | None, current: UserRecord, seen_at: str) -> UserUpdate | None:
    """Tonight's record against the stored one: the update to write, or None if nothing changed."""
    if previous is None:
        stored = StoredUser(record=current, version=1, etag=None, first_seen=seen_at)
        return UserUpdate(stored, (Change(current.id, ChangeKind.NEW, None, summary(current)),), None)

    current = carry_registration_forward(previous.record, current)
    if previous.deleted:
        changes: list[Change] = [Change(current.id, ChangeKind.RESTORED, summary(previous.record), summary(current))]
    else:
        if current.tracked() == previous.record.tracked() and not last_seen_refresh_due(
            previous.record.scope, current.scope
        ):
            return None
        # A tracked field changed. Some changes (a new display name, UPN or address) are kept
        # silently: they update the stored state without an event in the history.
        changes = field_changes(previous.record, current)
    stored = StoredUser(
        record=current,
        version=previous.version + 1,
        etag=None,
        deleted=False,
        first_seen=previous.first_seen,
    )
    return UserUpdate(stored, tuple(changes), previous.etag)


def deletions(previous: Iterable[StoredUser], seen_ids: Container[str], seen_at: str) -> list[UserUpdate]:
    """Users the directory no longer lists. Only call this after a pull that completed: a missing
    user in a partial pull means nothing."""
    updates = []
    for old in previous:
        if old.deleted or old.record.id in seen_ids:
            continue
        stored = replace(old, version=old.version + 1, etag=None, deleted=True)
        change = Change(old.record.id, ChangeKind.DELETED, summary(old.record), None)
        updates.append(UserUpdate(stored, (change,), old.etag))
    return updates
