"""What guards a run's chain beyond its own hashes: the stored-chain check, and anchor keys.

The SHA-256 chain (:mod:`ledgerflow.eventstore.envelope`) finds an edited,
deleted or reordered row, but it is keyless: whoever can write the store can
also recompute every hash after an edit, and the log verifies again. Two
things here answer that, neither changing the store's schema:

- :func:`stored_chain_problem` reads a run back and checks its chain and its
  ``runs`` row; the orchestrator calls it before it appends to an existing
  run, so nothing is ever chained onto a log that fails its own check.
- **Keyed anchors.** An anchor is a run's chain head, ``SEQ:HASH``, kept
  outside the store (``ledgerflow log RUN --head``); a log that does not hold
  exactly that hash at that seq was truncated or rewritten, recomputed chain
  or not (:mod:`ledgerflow.replay.anchors`). A key seals the anchor itself:

  * HMAC-SHA256 (a shared secret, ``--key-file`` or
    ``$LEDGERFLOW_CHAIN_KEY_FILE``): ``SEQ:HASH:MAC``, MAC =
    HMAC(key, run_id | seq | hash), 64 hex digits;
  * Ed25519 (the ``cryptography`` package: ``--sign-key`` a private PEM,
    ``--verify-key`` its public PEM): ``SEQ:HASH:SIG``, 128 hex digits;
    the verifier needs no secret.

Why a sealed anchor, not a MAC per event (a v4 ``mac`` column): a per-event
MAC needs the key in every process that appends (where an attacker with
write access to the store most likely also finds it), a schema migration,
and still cannot see a deleted tail. A sealed head needs the key only where
anchors are made and checked, and covers every event up to it. What it
buys over a plain anchor: the anchor may be kept somewhere the attacker can
also write (a ticket, a log line, next to the store) -- a rewritten log with a
rewritten ``SEQ:HASH`` fails without the key. What neither buys: events
appended after the last anchor are covered by the chain alone; anchor often
(at the end of each run, or each batch of runs).

Example::

    key = load_chain_key("/etc/ledgerflow/chain.key")
    mac = anchor_mac(key, "r1", 14, head_hash)
    assert mac_matches(key, "r1", 14, head_hash, mac)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from pathlib import Path

import msgspec

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore.envelope import ChainCursor, ChainProblem, Envelope
from ledgerflow.eventstore.errors import EventUnreadableError
from ledgerflow.eventstore.protocol import EventStore

__all__ = [
    "KEY_ENV",
    "MIN_KEY_BYTES",
    "ChainKeyError",
    "StoredChainCheck",
    "anchor_mac",
    "anchor_message",
    "chain_key_path",
    "load_chain_key",
    "mac_matches",
    "sign_anchor",
    "signature_matches",
    "stored_chain_problem",
]

#: The environment variable naming the HMAC key file when ``--key-file`` is not given.
KEY_ENV = "LEDGERFLOW_CHAIN_KEY_FILE"
#: A shorter key is refused: 16 random bytes are past any brute force.
MIN_KEY_BYTES = 16

# WIRE FORMAT of every sealed anchor ever printed: changing it voids them all.
_DOMAIN = b"ledgerflow.chain.anchor.v1\x00"
_LEN = struct.Struct(">Q").pack


class ChainKeyError(LedgerflowError):
    """A chain key or anchor key file that cannot be used (missing, too short, not a key).

    Example::

        try:
            key = load_chain_key("chain.key")
        except ChainKeyError as exc:
            print(exc)   # names the file and what is wrong with it
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"Cannot use the key file '{path}': {problem}.")


class StoredChainCheck:
    """Checks a run's stored chain while the log is streamed for another purpose (a fold).

    ``feed`` each envelope before using it (the first break, or None), or
    ``unreadable`` when a row could not be parsed; then ``finish`` compares
    the ``runs`` row, which remembers how far the log went (a deleted tail).

    With ``after=(seq, hash)`` the check starts past a known link of the
    chain (a state snapshot's seq and the hash it was checked against): the
    first envelope fed must be ``seq + 1`` and chain onto ``hash``. What
    comes before is not checked here (``verify`` checks the whole log).

    Example::

        check = StoredChainCheck("r1")
        async for env in store.read("r1"):
            if (problem := check.feed(env)) is not None:
                raise SystemExit(problem.message)
        problem = await check.finish(store)

        tail = StoredChainCheck("r1", after=(2000, snapshot.hash))
    """

    __slots__ = ("cursor", "run_id")

    def __init__(self, run_id: str, after: tuple[int, str] | None = None) -> None:
        self.run_id = run_id
        self.cursor = ChainCursor(run_id)
        if after is not None:
            self.cursor.seq, self.cursor.hash = after

    def feed(self, env: Envelope) -> ChainProblem | None:
        problem = self.cursor.feed(env)
        return None if problem is None else _with_decoding(problem, env)

    def unreadable(self, exc: EventUnreadableError) -> ChainProblem:
        """A row no reader can parse is a break too."""
        seq = exc.seq if exc.seq is not None else self.cursor.seq + 1
        return ChainProblem(seq, "unreadable", f"Event seq {seq} of run {self.run_id!r} cannot "
                            f"be read: {exc.problem}.")

    async def finish(self, store: EventStore) -> ChainProblem | None:
        summary = await store.run(self.run_id)
        seen = self.cursor.seq
        if summary is not None and summary.last_seq != seen:
            missing = min(summary.last_seq, seen) + 1
            return ChainProblem(missing, "gap", f"Event seq {missing} of run {self.run_id!r} is "
                                f"missing: the runs table records {summary.last_seq} events but "
                                f"the log holds {seen}.")
        return None


async def stored_chain_problem(store: EventStore, run_id: str) -> ChainProblem | None:
    """The first break of ``run_id``'s stored chain, or None when it holds (or has no events).

    The ``runs`` row, written in the same transaction as every append, must
    agree on the last seq, or events were deleted (a tail the chain alone
    cannot see). Streams the log, so a long run is checked in constant memory.

    Example::

        problem = await stored_chain_problem(store, "r1")
        if problem is not None:
            raise ChainBrokenError("r1", problem.seq, problem.message)
    """
    check = StoredChainCheck(run_id)
    try:
        async for env in store.read(run_id):
            problem = check.feed(env)
            if problem is not None:
                return problem
    except EventUnreadableError as exc:
        return check.unreadable(exc)
    return await check.finish(store)


def _with_decoding(problem: ChainProblem, env: Envelope) -> ChainProblem:
    """``problem``, saying too when the altered event's data is not even JSON."""
    if problem.kind != "hash" or problem.seq != env.seq:
        return problem
    try:
        msgspec.json.decode(env.data)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as exc:
        return ChainProblem(problem.seq, problem.kind, (
            f"{problem.message} Event seq {env.seq} of run {env.run_id!r} cannot be decoded "
            f"either: its data is not JSON ({exc})."))
    return problem


def chain_key_path(given: str | None) -> str | None:
    """The HMAC key file to use: ``given``, else ``$LEDGERFLOW_CHAIN_KEY_FILE``, else None."""
    return given or os.environ.get(KEY_ENV) or None


def load_chain_key(path: str | os.PathLike[str]) -> bytes:
    """Read an HMAC key file: its bytes, a trailing newline dropped; at least 16 bytes.

    Make one with ``head -c 32 /dev/urandom > chain.key`` (or any secret text).

    Example::

        key = load_chain_key("chain.key")
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ChainKeyError(str(path), exc.strerror or str(exc)) from exc
    # A key written by `echo secret > file` ends with a newline nobody meant as key.
    key = raw.rstrip(b"\r\n")
    if len(key) < MIN_KEY_BYTES:
        raise ChainKeyError(str(path), f"it holds {len(key)} bytes, fewer than the "
                            f"{MIN_KEY_BYTES} a key needs (head -c 32 /dev/urandom > FILE)")
    return key


def anchor_message(run_id: str, seq: int, hash_: str) -> bytes:
    """The bytes a key seals for an anchor: domain, then framed run id, seq and hash.

    Framed as the chain frames its fields (8-byte length, then the UTF-8
    bytes), so no two different anchors seal the same bytes.

    Example::

        >>> anchor_message("r1", 3, "ab")[-2:]
        b'ab'
    """
    parts = [p.encode() for p in (run_id, str(seq), hash_)]
    return _DOMAIN + b"".join(_LEN(len(p)) + p for p in parts)


def anchor_mac(key: bytes, run_id: str, seq: int, hash_: str) -> str:
    """The hex HMAC-SHA256 of an anchor under ``key`` (64 hex digits).

    Example::

        >>> len(anchor_mac(b"k" * 16, "r1", 3, "0" * 64))
        64
    """
    return hmac.new(key, anchor_message(run_id, seq, hash_), hashlib.sha256).hexdigest()


def mac_matches(key: bytes, run_id: str, seq: int, hash_: str, mac: str) -> bool:
    """Whether ``mac`` seals this anchor under ``key`` (compared in constant time)."""
    return hmac.compare_digest(anchor_mac(key, run_id, seq, hash_), mac.lower())


def _read_pem(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ChainKeyError(str(path), exc.strerror or str(exc)) from exc


def sign_anchor(private_pem_path: str | os.PathLike[str], run_id: str, seq: int,
                hash_: str) -> str:
    """The hex Ed25519 signature of an anchor (128 hex digits), by a private PEM key.

    Needs the ``cryptography`` package. Make a key pair with
    ``openssl genpkey -algorithm ed25519 -out sign.pem`` and
    ``openssl pkey -in sign.pem -pubout -out verify.pem``.

    Example::

        sig = sign_anchor("sign.pem", "r1", 14, head_hash)
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PrivateKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_private_key,
    )

    try:
        key = load_pem_private_key(_read_pem(private_pem_path), password=None)
    except (ValueError, TypeError) as exc:
        raise ChainKeyError(str(private_pem_path), f"not an unencrypted PEM private key "
                            f"({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ChainKeyError(str(private_pem_path), "not an Ed25519 private key")
    return key.sign(anchor_message(run_id, seq, hash_)).hex()


def signature_matches(public_pem_path: str | os.PathLike[str], run_id: str, seq: int,
                      hash_: str, signature: str) -> bool:
    """Whether ``signature`` is the Ed25519 signature of this anchor by the public PEM key."""
    from cryptography.exceptions import InvalidSignature  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (  # noqa: PLC0415
        Ed25519PublicKey,
    )
    from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
        load_pem_public_key,
    )

    try:
        key = load_pem_public_key(_read_pem(public_pem_path))
    except (ValueError, TypeError) as exc:
        raise ChainKeyError(str(public_pem_path), f"not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ChainKeyError(str(public_pem_path), "not an Ed25519 public key")
    try:
        key.verify(bytes.fromhex(signature), anchor_message(run_id, seq, hash_))
    except (InvalidSignature, ValueError):
        return False
    return True
