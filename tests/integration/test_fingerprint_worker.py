"""shared.adapters.fingerprint_worker: a real child process fingerprinting pages' bytes. It must
answer exactly what the sync would compute itself, in order, and only ever cost speed: an odd
page, a dead child or a closed worker answer None, and nothing is left running."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

import pytest

from shared.adapters import fingerprint_worker
from shared.adapters.fingerprint_worker import FingerprintWorker
from shared.domain.steady import REPORT, REPORT_STAMP, USERS, fingerprints, page_fingerprints, report_fingerprint

pytestmark = pytest.mark.integration


def _page(objects: list[Any]) -> bytes:
    return json.dumps({"@odata.context": "x", "value": objects}, ensure_ascii=False).encode()


def _users(start: int, n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"u-{i}", "displayName": f"<b>Ünï {i}</b>", "otherMails": [f"x{i}@e.example"], "enabled": i % 3 > 0}
        for i in range(start, start + n)
    ]


def _rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"u-{i}", "isMfaRegistered": i % 2 == 0, REPORT_STAMP: f"2026-12-0{i % 9 + 1}"} for i in range(n)]


@pytest.fixture
async def worker() -> Any:
    started = await FingerprintWorker.start()
    assert started is not None
    yield started
    await started.aclose()


async def test_answers_what_the_sync_would_compute_in_the_order_sent(worker: FingerprintWorker) -> None:
    users = [_users(0, 999), _users(999, 500), _users(1499, 1)]
    rows = _rows(300)
    tasks = [worker.submit(_page(p), USERS) for p in users] + [worker.submit(_page(rows), REPORT)]
    answers = await asyncio.gather(*tasks)  # all four in flight at once
    for page, answer in zip(users, answers, strict=False):
        assert answer == ([u["id"] for u in page], fingerprints(page))
    assert answers[-1] == ([r["id"] for r in rows], [report_fingerprint(dict(r)) for r in rows])
    assert worker.pages == 4 and worker.broken is None


async def test_an_odd_page_answers_none_and_the_next_page_is_still_answered(worker: FingerprintWorker) -> None:
    odd = [
        b"not json",
        _page([{"id": "a"}, "not an object"]),
        _page([{"displayName": "no id"}]),
        json.dumps({"value": {"id": "a"}}).encode(),
        b'{"value": [{"id": "a", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
    ]
    for raw in odd:
        assert await worker.submit(raw, USERS) is None
        assert page_fingerprints(raw, USERS) is None  # the worker says what the function says
    good = _users(0, 3)
    assert await worker.submit(_page(good), USERS) == ([u["id"] for u in good], fingerprints(good))
    assert worker.broken is None


async def test_a_dead_worker_answers_none_from_then_on_and_says_why(
    worker: FingerprintWorker, caplog: pytest.LogCaptureFixture
) -> None:
    assert await worker.submit(_page(_users(0, 2)), USERS) is not None
    worker._process.kill()
    await worker._process.wait()
    with caplog.at_level(logging.WARNING):
        assert await worker.submit(_page(_users(0, 2)), USERS) is None
        assert await worker.submit(_page(_users(0, 2)), USERS) is None
    assert worker.broken is not None
    assert sum("fingerprint worker stopped" in r.getMessage() for r in caplog.records) == 1


async def test_a_stalled_worker_is_dropped_after_its_time(
    worker: FingerprintWorker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fingerprint_worker, "_ANSWER_SECONDS", 0.3)
    os.kill(worker._process.pid, signal.SIGSTOP)  # the child stops answering
    with caplog.at_level(logging.WARNING):
        assert await worker.submit(_page(_users(0, 5)), USERS) is None
    assert "did not answer within 0.3 s" in (worker.broken or "")
    assert await worker._process.wait() == -signal.SIGKILL


async def test_closing_stops_the_child_and_later_pages_answer_none() -> None:
    worker = await FingerprintWorker.start()
    assert worker is not None
    pending = worker.submit(_page(_users(0, 50)), USERS)
    await worker.aclose()
    assert pending.done() and pending.result() is not None  # a page in flight is answered first
    assert worker._process.returncode is not None
    assert await worker.submit(_page(_users(0, 1)), USERS) is None


async def test_no_worker_when_no_child_can_start(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING):
        assert await FingerprintWorker.start() is None
    assert any("no fingerprint worker" in r.getMessage() for r in caplog.records)


def test_an_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        page_fingerprints(_page([]), "groups")
