"""Small real disks for tests: a tmpfs of a given size, mounted for the test's duration."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount_point: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point` (created); skips the test where mounting is not
    permitted (it needs root)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (it needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def read_only(mount_point: Path) -> None:
    """Make a tmpfs mounted by `tmpfs` read-only (root writes anything else)."""
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
