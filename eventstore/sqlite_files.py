"""Checks on a SQLite store's file made before any connection opens it."""

from __future__ import annotations

import os

from .errors import StoreNotFoundError, StoreOpenError

__all__ = ["must_be_an_existing_file", "must_be_writable_by_us"]


def must_be_an_existing_file(path: str) -> None:
    """Refuse, before any connection, a file that is missing or empty (it holds no store).

    ``create=False`` and ``read_only=True`` opens call this so that a read
    never turns a mistyped path or a zero-byte file into an empty store.
    """
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        raise StoreNotFoundError(path, "the file does not exist") from None
    except OSError:
        return  # unreadable or a special name: SQLite's own error is clearer
    if size == 0:
        raise StoreNotFoundError(path, "the file is empty (zero bytes)")


def must_be_writable_by_us(path: str) -> None:
    """Refuse a writable open of an existing store this user cannot write.

    SQLite silently opens such a file read-only, and only the first append
    of a run would fail; say so at open, with the fix.
    """
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise StoreOpenError(
            path, "the file is read-only for this user", read_only_would_work=True)
