"""``open_store``: from a path or url to an open :class:`~ledgerflow.eventstore.EventStore`.

Accepted forms::

    "runs.db", "./x/runs.db", Path("runs.db")   a SQLite file (relative to the cwd)
    "sqlite:///relative.db"                      a SQLite file, relative path
    "sqlite:////abs/path.db"                     a SQLite file, absolute path
    "sqlite:///x.db?synchronous=normal&busy_timeout_ms=10000&max_event_bytes=65536"
    "postgresql://user:pw@host:5432/db"          PostgreSQL, schema "ledgerflow"
    "postgres://user@host/db?schema=team_a&pool_size=8&max_event_bytes=65536"

PostgreSQL urls take the options ``schema`` (the PostgreSQL schema holding
the store's tables, default ``ledgerflow``), ``pool_size`` (the most
connections one store object opens, default 4), ``max_event_bytes``,
``busy_timeout_ms`` (becomes ``lock_timeout``), ``synchronous`` (``normal``
becomes ``synchronous_commit = off``), ``application_name`` (default
``ledgerflow``) and ``connect_timeout`` (seconds). libpq's connection keys
that asyncpg reads (``sslmode``, ``sslrootcert``, ``host``, ``port``,
``target_session_attrs``, ... see ``_LIBPQ_KEYS``) are left in the url for
asyncpg. Any other name is refused, with the nearest known one ("did you mean
schema?"): asyncpg would send it to the server as a setting, so a typo failed
only at connect time. An option given twice is refused, for both backends.
Messages show the url as typed, without its password.

Options given as keyword arguments win over the same option in the url.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from .core import DEFAULT_BUSY_TIMEOUT_MS, DEFAULT_MAX_EVENT_BYTES, StoreCore
from .errors import StoreUrlError
from .postgres import (
    DEFAULT_APPLICATION_NAME,
    DEFAULT_POOL_SIZE,
    DEFAULT_SCHEMA,
    PostgresEventStore,
    check_schema_name,
)
from .protocol import EventStore
from .schema import SYNCHRONOUS_MODES
from .sqlite import SQLiteEventStore

__all__ = [
    "StoreOpener",
    "StoreTarget",
    "mask_password",
    "open_store",
    "parse_store_url",
    "upgrade_store",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
_ACCEPTED = (
    "a file path such as 'runs.db', 'sqlite:///relative.db', 'sqlite:////absolute/path.db' "
    "or 'postgresql://user@host/db'"
)
_OPTIONS = ("synchronous", "busy_timeout_ms", "max_event_bytes")
_POSTGRES_OPTIONS = (*_OPTIONS, "schema", "pool_size", "application_name", "connect_timeout")
# The libpq connection keys asyncpg itself reads from a url; they stay in the
# dsn. Every other name would reach the server as a setting (asyncpg's rule),
# where a typo like "schma" fails only at connect time, blamed on the server;
# so they are refused here instead, with the nearest known name.
_LIBPQ_KEYS = (
    "host", "port", "user", "password", "passfile", "dbname", "database", "service",
    "sslmode", "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslpassword", "sslnegotiation",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "target_session_attrs",
    "krbsrvname", "gsslib",
)


@dataclass(frozen=True)
class StoreTarget:
    """Where a store lives and how to open it, as read from a path or url."""

    backend: str
    location: str
    options: dict[str, Any] = field(default_factory=dict)
    create: bool = True
    """False: open an existing store only (:class:`StoreNotFoundError` otherwise)."""
    read_only: bool = False
    """True: write nothing; appends and leases raise :class:`StoreReadOnlyError`."""
    shown: str = field(default="", repr=False, compare=False)
    """The location as messages show it: what the user typed, its password masked."""


def mask_password(url: str) -> str:
    """``url`` as typed, with the password of its user (if any) left out.

    Example::

        >>> mask_password("postgresql://app:s3cret@db/runs?schema=a")
        'postgresql://app@db/runs?schema=a'
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}@{host}"))


def _with_option(url: str, name: str, value: str) -> str:
    """``url`` with ``name=value`` in its query, replacing the one already there."""
    parts = urlsplit(url)
    pairs = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    return urlunsplit(parts._replace(query=urlencode([*pairs, (name, value)])))


def _unknown(url: str, name: str, known: tuple[str, ...]) -> StoreUrlError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return StoreUrlError(
        url, f"the option {name!r} is unknown; {hint}the known ones are {', '.join(known)}"
    )


def _query_pairs(url: str, query: str) -> list[tuple[str, str]]:
    """The url's options in order, refusing one given twice (which would win is a guess)."""
    pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            values = [raw for key, raw in pairs if key == name]
            raise StoreUrlError(
                url,
                f"the option {name} is given {len(values)} times ({', '.join(map(repr, values))});"
                " give it once",
            )
        seen.add(name)
    return pairs


def _int_option(url: str, name: str, raw: str, minimum: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise StoreUrlError(url, f"the option {name} must be an integer >= {minimum}, not {raw!r}")
    return value


def _seconds_option(url: str, name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:  # False for NaN as well
        raise StoreUrlError(url, f"the option {name} must be a number of seconds > 0, not {raw!r}")
    return value


def _option(url: str, name: str, raw: str, backend: str = "sqlite") -> Any:
    if name in _POSTGRES_OPTIONS and name not in _OPTIONS and backend != "postgres":
        raise StoreUrlError(url, f"the option {name} applies only to PostgreSQL stores")
    if name == "schema":
        problem = check_schema_name(raw)
        if problem is not None:
            raise StoreUrlError(url, problem)
        return raw
    if name == "pool_size":
        return _int_option(url, name, raw, 1)
    if name == "application_name":
        return raw
    if name == "connect_timeout":
        return _seconds_option(url, name, raw)
    if name == "synchronous":
        if raw.upper() not in SYNCHRONOUS_MODES:
            raise StoreUrlError(url, f"the option synchronous must be full or normal, not {raw!r}")
        return raw.upper()
    if name == "busy_timeout_ms":
        return _int_option(url, name, raw, 0)
    if name == "max_event_bytes":
        return _int_option(url, name, raw, 1)
    raise _unknown(url, name, _OPTIONS)


def _options(url: str, query: str) -> dict[str, Any]:
    return {name: _option(url, name, raw) for name, raw in _query_pairs(url, query)}


def _postgres_target(url: str) -> StoreTarget:
    # Our options come out of the query; libpq's connection keys stay in the
    # dsn for asyncpg; anything else is refused (see _LIBPQ_KEYS).
    shown = mask_password(url)
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    rest = []
    for name, raw in _query_pairs(shown, parts.query):
        if name in _POSTGRES_OPTIONS:
            options[name] = _option(shown, name, raw, "postgres")
        elif name in _LIBPQ_KEYS:
            rest.append((name, raw))
        else:
            raise _unknown(shown, name, (*_POSTGRES_OPTIONS, *_LIBPQ_KEYS))
    dsn = urlunsplit(parts._replace(query=urlencode(rest), fragment=""))
    return StoreTarget("postgres", dsn, options, shown=shown)


def parse_store_url(url_or_path: str | os.PathLike[str]) -> StoreTarget:
    """Read a path or url into a :class:`StoreTarget`; raise :class:`StoreUrlError` if unusable.

    An unknown option and an option given twice are refused, naming it.

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
            return _postgres_target(url)
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
    return StoreTarget("sqlite", location, options, shown=url)


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
        # read_only implies create=False: a read never creates a store.
        create = self.target.create and not self.target.read_only
        read_only = self.target.read_only
        if self.target.backend == "postgres":
            return await PostgresEventStore.open(
                self.target.location,
                schema=opts.get("schema", DEFAULT_SCHEMA),
                synchronous=opts.get("synchronous", "FULL"),
                busy_timeout_ms=opts.get("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS),
                max_event_bytes=opts.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES),
                pool_size=opts.get("pool_size", DEFAULT_POOL_SIZE),
                create=create,
                read_only=read_only,
                application_name=opts.get("application_name", DEFAULT_APPLICATION_NAME),
                connect_timeout=opts.get("connect_timeout"),
                shown=self.target.shown or None,
            )
        return await SQLiteEventStore.open(
            self.target.location,
            synchronous=opts.get("synchronous", "FULL"),
            busy_timeout_ms=opts.get("busy_timeout_ms", DEFAULT_BUSY_TIMEOUT_MS),
            max_event_bytes=opts.get("max_event_bytes", DEFAULT_MAX_EVENT_BYTES),
            create=create,
            read_only=read_only,
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
    create: bool = True,
    read_only: bool = False,
    synchronous: str | None = None,
    busy_timeout_ms: int | None = None,
    max_event_bytes: int | None = None,
    schema: str | None = None,
    pool_size: int | None = None,
) -> StoreOpener:
    """Open the event store at a path or url (see the module docstring for the forms).

    ``create=True`` (the default) creates the store (file, or PostgreSQL
    schema) when it does not exist. ``create=False`` opens an existing store
    only: a missing file, a zero-byte or blank file, or a missing or empty
    PostgreSQL schema raises :class:`StoreNotFoundError` and nothing is
    created. ``read_only=True`` implies ``create=False`` and writes nothing,
    not even SQLite's ``-wal``/``-shm`` files in a folder the user cannot
    write; its appends and leases raise :class:`StoreReadOnlyError`. Read
    commands (runs, show, log, replay, verify, diff) open with
    ``read_only=True``.

    ``synchronous="FULL"`` (the default) makes every commit survive power
    loss; ``"NORMAL"`` is faster and survives a process crash, but the last
    commits may be lost on power loss. ``busy_timeout_ms`` is how long a
    write waits for another writer's lock; ``max_event_bytes`` caps one
    event's data. For PostgreSQL, ``schema`` names the PostgreSQL schema of
    the store's tables (created if missing) and ``pool_size`` caps the
    connections of this store object. Keyword arguments win over the same
    option in the url.

    Example::

        async with open_store("runs.db") as store:
            await store.append("r1", [NewEvent("RunStarted", b"{}")], expected_seq=0)
        async with open_store("postgresql://app@db/runs", schema="team_a") as store:
            ...
        async with open_store("runs.db", read_only=True) as store:   # an audit
            print(await store.runs())
    """
    target = parse_store_url(url_or_path)
    given = {
        "synchronous": synchronous,
        "busy_timeout_ms": busy_timeout_ms,
        "max_event_bytes": max_event_bytes,
        "schema": schema,
        "pool_size": pool_size,
    }
    options = dict(target.options)
    shown = target.shown
    for name, value in given.items():
        if value is not None:
            options[name] = _option(target.shown, name, str(value), target.backend)
    if schema is not None and target.backend == "postgres":
        # The keyword wins over the url; show the schema actually opened.
        shown = _with_option(shown, "schema", options["schema"])
    return StoreOpener(
        StoreTarget(
            target.backend, target.location, options,
            create=bool(create) and not read_only, read_only=bool(read_only), shown=shown,
        )
    )


async def upgrade_store(
    url_or_path: str | os.PathLike[str], **open_options: Any
) -> tuple[int, int]:
    """Run the store's missing migrations in one transaction; ``(from_version, to_version)``.

    What ``ledgerflow db upgrade --db URL`` runs: opening never migrates a
    store. Idempotent: a current store returns ``(SCHEMA_VERSION,
    SCHEMA_VERSION)`` and is not written. SQLite migrates inside ``BEGIN
    IMMEDIATE``, PostgreSQL under the store's advisory lock, so a crash
    leaves the old schema and two upgraders take turns. A store of a newer
    ledgerflow raises :class:`SchemaVersionError`; a missing one
    :class:`StoreNotFoundError` (``open_options`` go to :func:`open_store`;
    ``create`` defaults to False here).

    Example::

        from_version, to_version = await upgrade_store("runs.db")   # (1, 2)
    """
    open_options.setdefault("create", False)
    async with open_store(url_or_path, **open_options) as store:
        if not isinstance(store, StoreCore):  # pragma: no cover - open_store makes StoreCores
            raise TypeError(f"cannot upgrade a {type(store).__name__}")
        store._must_not_be_read_only("upgrade the store's schema")
        return await store._upgrade()
