"""A small real filesystem for tests of a full disk: a tmpfs mounted for the test's duration.

Mounting takes root with CAP_SYS_ADMIN (a plain root shell, not a default Docker container, not a CI runner's
user); elsewhere the test is skipped with the reason, and the RLIMIT_FSIZE tests provoke the same write failure
(EFBIG from the kernel) without privileges.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_filesystem(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    mount_point.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command here to mount a small tmpfs; the RLIMIT_FSIZE tests cover this fault")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): it takes root with CAP_SYS_ADMIN; the "
            "RLIMIT_FSIZE tests provoke the same write failure without privileges"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """A ballast file that leaves ``leave`` bytes free on ``folder``'s filesystem."""
    ballast = folder / "ballast"
    ballast.write_bytes(b"\0" * max(shutil.disk_usage(folder).free - leave, 0))
    return ballast
