"""Headless Chromium (Debian's ``chromium`` package; ``make browser`` installs it) for screenshots."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

# No network, no first-run work, no profile left behind.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(page: Path, png: Path, *, width: int = 1280, height: int = 1600, timeout: float = 60) -> None:
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed: run `make browser` (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        subprocess.run(
            [
                binary,
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--screenshot={png}",
                f"--window-size={width},{height}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
