"""The database URLs the store takes, and what it says about the ones it cannot use (the same
checks through a real `sluice serve` process are in tests/e2e/test_startup.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.store import sqlite_file, urls
from sluice.store.errors import StoreSetupError
from sluice.store.factory import open_store
from tests.support.disks import read_only, tmpfs


@pytest.mark.parametrize(
    ("written", "used"),
    [
        ("postgresql://u:pw@db:5433/sluice", "postgresql+asyncpg://u:pw@db:5433/sluice"),
        ("postgres://u@db/sluice", "postgresql+asyncpg://u@db/sluice"),
        ("postgresql+asyncpg://u@db/sluice", "postgresql+asyncpg://u@db/sluice"),
        ("sqlite:///var/sluice.db", "sqlite+aiosqlite:///var/sluice.db"),
        ("sqlite:////srv/sluice.db?timeout=1", "sqlite+aiosqlite:////srv/sluice.db?timeout=1"),
    ],
)
def test_the_usual_forms_are_accepted(written: str, used: str) -> None:
    assert urls.normalize(written).render_as_string(hide_password=False) == used


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("mysql://u@db/sluice", "cannot use mysql:// databases"),
        ("postgresql+psycopg://u@db/sluice", "its own driver, not psycopg"),
        ("db.example:5432", "is not a database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
    ],
)
def test_other_urls_are_refused_with_the_accepted_forms(written: str, problem: str) -> None:
    with pytest.raises(StoreSetupError, match=problem) as refused:
        urls.normalize(written)
    assert urls.ACCEPTED in str(refused.value)


def test_the_password_never_shows_where_the_data_is() -> None:
    assert urls.describe("postgres://u:secret@db/sluice") == "postgresql+asyncpg://u:***@db/sluice"


def test_a_relative_sqlite_path_is_shown_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert urls.describe("sqlite:///var/sluice.db") == str(tmp_path / "var" / "sluice.db")


def test_sqlite_files_that_cannot_work_are_named(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "garbage.db").write_bytes(b"\x00garbage" * 200)
    cases = {
        tmp_path / "a-file" / "sluice.db": f"cannot create the folder {tmp_path / 'a-file'}",
        tmp_path / "a-folder": "is a folder",
        tmp_path / "garbage.db": "is not a SQLite database",
    }
    for path, problem in cases.items():
        with pytest.raises(StoreSetupError, match=problem):
            sqlite_file.check(path)
    sqlite_file.check(tmp_path / "new" / "sluice.db")
    assert (tmp_path / "new" / "sluice.db").exists()


def test_a_read_only_sqlite_file_or_folder_is_named(tmp_path: Path) -> None:
    """On a read-only file system: as root, file permissions would not stop a write."""
    with tmpfs(tmp_path / "disk", "1m") as disk:
        sqlite_file.check(disk / "sluice.db")
        read_only(disk)
        with pytest.raises(StoreSetupError, match="is read-only"):
            sqlite_file.check(disk / "sluice.db")
        with pytest.raises(
            StoreSetupError, match=f"cannot create .*: the folder {disk} is not writable"
        ):
            sqlite_file.check(disk / "new.db")


async def test_opening_the_store_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(StoreSetupError, match="is a folder"):
        await open_store(f"sqlite:///{tmp_path}")
