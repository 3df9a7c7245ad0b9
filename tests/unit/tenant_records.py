"""Records of a generated tenant, through the real normaliser (for tests that need many realistic users)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from shared.domain.normalize import record_from_graph, registration_from_graph
from shared.domain.records import UserRecord
from sim.tenant import generate_tenant


def tenant_records(users: int, seed: int) -> Iterator[tuple[dict[str, Any], UserRecord]]:
    """(Graph user object, its record joined with its report row) for every user."""
    tenant = generate_tenant(users, seed=seed)
    regs = dict(r for r in map(registration_from_graph, tenant.user_registration_details) if isinstance(r, tuple))
    for obj in tenant.users:
        record = record_from_graph(obj, regs.get(obj["id"]))
        assert isinstance(record, UserRecord)
        yield obj, record
