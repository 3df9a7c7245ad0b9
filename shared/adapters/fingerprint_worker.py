"""A child process that fingerprints Graph pages beside the sync: a big night's second core.

On a night with a snapshot, most of the sync's own work is fingerprinting each page's objects to
find the unchanged steady users (``shared.jobs.unchanged``). That work needs nothing but the
page, so the sync hands each page's bytes, as Graph sent them, to this worker, parses its own
copy meanwhile, reads the next page, and then takes the ids and fingerprints the worker computed
(``steady.page_fingerprints``). The worker is a plain Python child (``python -m`` this module)
that reads nothing but its stdin and writes nothing but its stdout: no network, no tables, no
state between pages.

It only ever costs speed, never correctness: the sync checks the worker's ids against the ones it
parsed before using its fingerprints, and a worker that cannot start, dies, stalls or answers
nonsense is dropped for the rest of the run (logged once) and the sync fingerprints in-process
again.

Wire format, both ways little-endian: a request is ``<IB`` (the page's length, the kind: 0 users,
1 report) then the page's bytes; an answer is ``<I`` (its length) then ``marshal`` (version 2) of
``page_fingerprints``'s answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
import math
import os
import struct
import sys
from pathlib import Path
from typing import BinaryIO

from shared.domain.steady import FINGERPRINT_SIZE, REPORT, USERS, PagePrints, page_fingerprints

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("<IB")
_ANSWER = struct.Struct("<I")
_KINDS = (USERS, REPORT)
_STOP_SECONDS = 5.0
_ANSWER_SECONDS = 30.0  # a page takes milliseconds: a worker this late is stalled, not busy
_PIPE_BYTES = 1 << 20  # Linux lets any process widen a pipe this far (/proc/sys/fs/pipe-max-size)
_APP_ROOT = str(Path(__file__).resolve().parent.parent.parent)  # the directory holding ``shared``


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on, capped by a cgroup CPU quota (a
    container limited to one CPU on a bigger host has one to use, not the host's)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cpus, math.floor(quota))) if quota is not None else cpus


def _cgroup_quota() -> float | None:
    """The CPU quota of this process's cgroup, in CPUs (cgroup v2 ``cpu.max``, else v1's
    ``cpu.cfs_quota_us``); None when there is none or it cannot be read."""
    for quota_file, period_file in _CGROUP_FILES:
        try:
            text = Path(quota_file).read_text().split()
            if period_file is not None:
                text.append(Path(period_file).read_text().strip())
        except OSError:
            continue
        if len(text) < 2 or text[0] in ("max", "-1"):
            return None
        try:
            quota, period = int(text[0]), int(text[1])
        except ValueError:
            return None
        return quota / period if quota > 0 and period > 0 else None
    return None


_CGROUP_FILES: tuple[tuple[str, str | None], ...] = (
    ("/sys/fs/cgroup/cpu.max", None),
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
)


class FingerprintWorker:
    """The sync's handle on the child. Pages are answered in the order they were submitted.

    A page's bytes are written to the child at once: its stdin pipe is widened to hold a whole
    page, so the child reads the page while the event loop's thread parses its own copy."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._lock = asyncio.Lock()  # answers are read one at a time, in submission order
        self._broken: str | None = None
        self._pending: set[asyncio.Task[PagePrints | None]] = set()
        self.pages = 0  # pages the worker answered
        if process.stdin is not None:  # (an answer, about 55 bytes an object, fits the usual 64 KiB)
            _widen(process.stdin.transport.get_extra_info("pipe"))

    @classmethod
    async def start(cls) -> FingerprintWorker | None:
        """A running worker, or None (logged) when no child process can be started here."""
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                __name__,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=_APP_ROOT,  # ``-m`` imports from the working directory: the app's own ``shared``
            )
        except (OSError, ValueError) as exc:
            log.warning("no fingerprint worker (the sync fingerprints in-process): %s: %s", type(exc).__name__, exc)
            return None
        return cls(process)

    @property
    def broken(self) -> str | None:
        """Why the worker was dropped (None while it works)."""
        return self._broken

    def submit(self, raw: bytes, kind: str) -> asyncio.Task[PagePrints | None]:
        """Send a page to fingerprint (``kind``: ``steady.USERS`` or ``steady.REPORT``); the task
        answers the page's ids and fingerprints, or None (odd page, or no worker any more)."""
        code = _KINDS.index(kind)
        sent = False
        if self._broken is None:
            stdin = self._process.stdin
            assert stdin is not None  # a pipe
            try:
                stdin.write(_REQUEST.pack(len(raw), code))
                stdin.write(raw)
                sent = True
            except (OSError, RuntimeError) as exc:  # RuntimeError: the transport is closing
                self._drop(f"{type(exc).__name__}: {exc}")
        task = asyncio.get_running_loop().create_task(self._answer(sent))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _answer(self, sent: bool) -> PagePrints | None:
        async with self._lock:
            if not sent or self._broken is not None:
                return None
            stdin, stdout = self._process.stdin, self._process.stdout
            assert stdin is not None and stdout is not None  # both are pipes
            try:
                async with asyncio.timeout(_ANSWER_SECONDS):
                    await stdin.drain()
                    (length,) = _ANSWER.unpack(await stdout.readexactly(_ANSWER.size))
                    answer = marshal.loads(await stdout.readexactly(length))
            except TimeoutError:
                self._drop(f"it did not answer within {_ANSWER_SECONDS:g} s")
                return None
            except asyncio.CancelledError:
                self._drop("cancelled part way through an answer")
                raise
            except (OSError, EOFError, ValueError, TypeError, asyncio.IncompleteReadError) as exc:
                self._drop(f"{type(exc).__name__}: {exc}")
                return None
        if answer is None:
            return None
        if not _well_formed(answer):
            self._drop("it answered something that is not ids and fingerprints")
            return None
        self.pages += 1
        return answer  # type: ignore[no-any-return]

    def _drop(self, why: str) -> None:
        if self._broken is None:
            self._broken = why
            log.warning("the fingerprint worker stopped (the sync fingerprints in-process): %s", why)
            if self._process.returncode is None:
                self._process.kill()

    async def aclose(self) -> None:
        """Stop the child (end of input, then a kill if it lingers) once the pages in flight are
        answered; nothing is left running."""
        if self._pending:
            _, late = await asyncio.wait(list(self._pending), timeout=_STOP_SECONDS)
            if late:  # a hung child: the kill ends the reads
                self._drop(f"it did not answer within {_STOP_SECONDS:g} s")
                await asyncio.wait(late)
        if self._broken is None:
            self._broken = "closed"
        stdin = self._process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), _STOP_SECONDS)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


def _widen(pipe: object) -> None:
    """Let a pipe hold a whole page (Linux; elsewhere, and when refused, it stays as it is)."""
    try:
        import fcntl  # not on Windows
    except ImportError:
        return
    fileno = getattr(pipe, "fileno", None)
    if fileno is None or not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    with contextlib.suppress(OSError, ValueError):
        fcntl.fcntl(fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)


def _well_formed(answer: object) -> bool:
    if not isinstance(answer, tuple) or len(answer) != 2:
        return False
    ids, prints = answer
    return (
        isinstance(ids, list)
        and isinstance(prints, list)
        and len(ids) == len(prints)
        and set(map(type, prints)) <= {bytes}
        and set(map(len, prints)) <= {FINGERPRINT_SIZE}
    )


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """The child's loop: answer each page until the input ends."""
    while True:
        head = requests.read(_REQUEST.size)
        if len(head) < _REQUEST.size:
            return
        length, code = _REQUEST.unpack(head)
        raw = requests.read(length)
        if len(raw) < length or code >= len(_KINDS):
            return
        try:
            answer = marshal.dumps(page_fingerprints(raw, _KINDS[code]), 2)
        except ValueError:  # an id nested deeper than marshal goes
            answer = marshal.dumps(None, 2)
        answers.write(_ANSWER.pack(len(answer)))
        answers.write(answer)
        answers.flush()


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
