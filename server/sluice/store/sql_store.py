"""The names the store had when it was this one module, for code written against them: the
store is now `base` (shared SQL), `sqlite`, `postgres` and `factory` (which picks by URL)."""

from __future__ import annotations

from sluice.store.base import SqlStore, page_query
from sluice.store.factory import create_engine, open_store

__all__ = ["SqlStore", "create_engine", "open_store", "page_query"]
