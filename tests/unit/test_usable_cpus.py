"""shared.adapters.fingerprint_worker.usable_cpus: the CPUs the process may run on, capped by a
cgroup CPU quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), so a container limited to one CPU
on a bigger host starts no worker."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.adapters import fingerprint_worker as worker


@pytest.mark.parametrize(
    ("v2", "v1", "expected"),
    [
        ("max 100000", None, 8),
        ("150000 100000", None, 1),
        ("250000 100000", None, 2),
        ("50000 100000", None, 1),  # half a CPU: still one to use
        (None, ("-1", "100000"), 8),
        (None, ("200000", "100000"), 2),
        (None, None, 8),
        ("garbage", None, 8),
    ],
)
def test_a_cgroup_quota_caps_the_cpus(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    v2: str | None,
    v1: tuple[str, str] | None,
    expected: int,
) -> None:
    files: list[tuple[str, str | None]] = []
    if v2 is not None:
        (tmp_path / "cpu.max").write_text(v2 + "\n")
    files.append((str(tmp_path / "cpu.max"), None))
    if v1 is not None:
        (tmp_path / "quota").write_text(v1[0] + "\n")
        (tmp_path / "period").write_text(v1[1] + "\n")
    files.append((str(tmp_path / "quota"), str(tmp_path / "period")))
    monkeypatch.setattr(worker, "_CGROUP_FILES", tuple(files))
    monkeypatch.setattr(worker.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    assert worker.usable_cpus() == expected
