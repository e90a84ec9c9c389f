"""``open_store``: from a path or url to an open :class:`~eventstore.EventStore`.

Accepted forms::

    "runs.db", "./x/runs.db", Path("runs.db")   a SQLite file (relative to the cwd)
    "sqlite:///relative.db"                      a SQLite file, relative path
    "sqlite:////abs/path.db"                     a SQLite file, absolute path
    "sqlite:///x.db?synchronous=normal&busy_timeout_ms=10000&max_event_bytes=65536"
    "postgresql://..." / "postgres://..."        PostgreSQL (not built yet)

Options given as keyword arguments win over the same option in the url.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .errors import StoreUrlError
from .protocol import EventStore
from .schema import SYNCHRONOUS_MODES
from .sqlite import DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_MAX_EVENT_BYTES, SQLiteEventStore

__all__ = ["StoreOpener", "StoreTarget", "open_store", "parse_store_url"]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_ACCEPTED = (
    "a file path such as 'runs.db', 'sqlite:///relative.db', 'sqlite:////absolute/path.db' "
    "or 'postgresql://user@host/db'"
)
_OPTIONS = ("synchronous", "busy_timeout_ms", "max_event_bytes")


@dataclass(frozen=True)
class StoreTarget:
    """Where a store lives and how to open it, as read from a path or url."""

    backend: str
    location: str
    options: dict[str, Any] = field(default_factory=dict)


def _int_option(url: str, name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise StoreUrlError(url, f"the option {name} must be an integer >= {minimum}, not {raw!r}")
    return value


def _option(url: str, name: str, raw: str) -> Any:
    if name == "synchronous":
        if raw.upper() not in SYNCHRONOUS_MODES:
            raise StoreUrlError(url, f"the option synchronous must be full or normal, not {raw!r}")
        return raw.upper()
    if name == "busy_timeout_ms":
        return _int_option(url, name, raw, 0)
    if name == "max_event_bytes":
        return _int_option(url, name, raw, 1)
    raise StoreUrlError(
        url, f"the option {name!r} is unknown; the known ones are {', '.join(_OPTIONS)}"
    )


def _options(url: str, query: str) -> dict[str, Any]:
    return {
        name: _option(url, name, raw)
        for name, raw in parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    }


def parse_store_url(url_or_path: str | os.PathLike[str]) -> StoreTarget:
    """Read a path or url into a :class:`StoreTarget`; raise :class:`StoreUrlError` if unusable.

    Example::

        >>> parse_store_url("sqlite:////tmp/runs.db?synchronous=normal")
        StoreTarget(backend='sqlite', location='/tmp/runs.db', options={'synchronous': 'NORMAL'})
    """
    url = os.fspath(url_or_path)
    if not isinstance(url, str):
        raise StoreUrlError(repr(url), "the location must be a str or a path, not bytes")
    match = _SCHEME.match(url)
    if match is None:
        location = url
        options: dict[str, Any] = {}
    else:
        scheme = match.group(1).lower()
        if scheme in ("postgresql", "postgres"):
            raise StoreUrlError(
                url,
                "PostgreSQL support is not built yet (a PostgreSQL backend will come later); "
                "use a SQLite file such as 'runs.db' for now",
            )
        if scheme != "sqlite":
            raise StoreUrlError(url, f"the scheme {scheme!r} is unknown; use {_ACCEPTED}")
        parts = urlsplit(url)
        if parts.netloc:
            raise StoreUrlError(
                url,
                f"a SQLite url has no host ({parts.netloc!r}); use 'sqlite:///relative.db' or "
                "'sqlite:////absolute/path.db'",
            )
        location = unquote(parts.path[1:])
        options = _options(url, parts.query)
    if not location:
        raise StoreUrlError(url, f"it names no file; use {_ACCEPTED}")
    if location == ":memory:" or location.startswith("file:"):
        raise StoreUrlError(
            url,
            "in-memory and 'file:' SQLite databases are not supported, because the store's "
            "writer and reader connections must share one file; use a file in a temporary folder",
        )
    return StoreTarget("sqlite", location, options)


class StoreOpener:
    """What :func:`open_store` returns: ``await`` it, or use it in ``async with``.

    Example::

        async with open_store("runs.db") as store:      # closed on leaving the block
            ...
        store = await open_store("runs.db")             # close it yourself
        await store.close()
    """

    def __init__(self, target: StoreTarget) -> None:
        """Remember where to open; nothing is opened until awaited or entered."""
        self.target = target
        self._store: EventStore | None = None

    async def _open(self) -> EventStore:
        opts = self.target.options
        return await SQLiteEventStore.open(
            self.target.location,
            synchronous=opts.get("synchronous", "FULL"),
            busy_timeout_ms=opts.get("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS),
            max_event_bytes=opts.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES),
        )

    def __await__(self) -> Generator[Any, None, EventStore]:
        """Open the store and return it; the caller must close it."""
        return self._open().__await__()

    async def __aenter__(self) -> EventStore:
        """Open the store for the block."""
        self._store = await self._open()
        return self._store

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the store opened for the block."""
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()


def open_store(
    url_or_path: str | os.PathLike[str],
    *,
    synchronous: str | None = None,
    busy_timeout_ms: int | None = None,
    max_event_bytes: int | None = None,
) -> StoreOpener:
    """Open the event store at a path or url (see the module docstring for the forms).

    ``synchronous="FULL"`` (the default) makes every commit survive power
    loss; ``"NORMAL"`` is faster and survives a process crash, but the last
    commits may be lost on power loss. ``busy_timeout_ms`` is how long a
    write waits for another writer's lock; ``max_event_bytes`` caps one
    event's data. Keyword arguments win over the same option in the url.

    Example::

        async with open_store("runs.db") as store:
            await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
    """
    target = parse_store_url(url_or_path)
    url = os.fspath(url_or_path)
    given = {
        "synchronous": synchronous,
        "busy_timeout_ms": busy_timeout_ms,
        "max_event_bytes": max_event_bytes,
    }
    options = dict(target.options)
    for name, value in given.items():
        if value is not None:
            options[name] = _option(url, name, str(value))
    return StoreOpener(StoreTarget(target.backend, target.location, options))
