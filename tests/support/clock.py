"""A clock the test moves: days pass in a call, so expiry and retention need no waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class ManualClock:
    def __init__(self) -> None:
        self._offset = timedelta(0)

    def now(self) -> datetime:
        # Real time plus what the test added: times keep increasing between calls, as the
        # store's ordering (create time, then id) expects of a clock.
        return datetime.now(UTC) + self._offset

    def advance(self, by: timedelta) -> None:
        self._offset += by
