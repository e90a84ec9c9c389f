"""Anchors: a run's chain head kept outside the store, and the check of a log against one.

The chain alone cannot tell a log from one rewritten with every hash
recomputed, nor see a deleted tail once the ``runs`` row is edited to match.
An anchor can: ``ledgerflow log RUN --head`` prints ``SEQ:HASH``, the last
event's seq and hash; kept elsewhere (a ticket, a git commit, a WORM bucket),
``ledgerflow verify RUN --head SEQ:HASH`` later checks that the log still
holds that hash at that seq, with the chain intact up to it. Since each hash
covers every event before it, that pins events 1..SEQ exactly; events
appended later are covered by the chain alone, until the next anchor.

A key (see :mod:`ledgerflow.eventstore.chain_keys`) seals the anchor, so it
may be kept where the attacker can also write: ``SEQ:HASH:MAC`` (HMAC-SHA256,
64 hex digits) or ``SEQ:HASH:SIG`` (Ed25519, 128 hex digits).

Example::

    anchor = await head_anchor(store, run_id, key=key)    # print anchor.text()
    ...
    report = await verify_run(store, run_id, head=Anchor.parse(kept), chain_key=key)
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledgerflow.errors import LedgerflowError
from ledgerflow.eventstore import Envelope, EventStore, check_chain
from ledgerflow.eventstore.chain_keys import (
    anchor_mac,
    chain_key_path,
    load_chain_key,
    mac_matches,
    sign_anchor,
    signature_matches,
)
from ledgerflow.machines import RunNotFoundError

__all__ = ["Anchor", "AnchorFormatError", "AnchorKeys", "anchor_problem", "head_anchor",
           "keys_from_files"]

_ANCHOR = re.compile(r"(?P<seq>[1-9][0-9]{0,18}):(?P<hash>[0-9a-f]{64})"
                     r"(?::(?P<seal>[0-9a-f]{64}|[0-9a-f]{128}))?")


class AnchorFormatError(LedgerflowError, ValueError):
    """A ``--head`` that is not ``SEQ:HASH``, ``SEQ:HASH:MAC`` or ``SEQ:HASH:SIG``."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"'{text[:200]}' is not an anchor: expected SEQ:HASH (a seq from 1 and 64 hex "
            "digits), optionally :MAC (64 hex digits) or :SIG (128), as "
            "`ledgerflow log RUN --head` prints it.")


@dataclass(frozen=True, slots=True)
class Anchor:
    """A run's chain head: ``seq``, its ``hash``, and optionally a ``seal`` over them.

    The seal is an HMAC-SHA256 (64 hex digits) or an Ed25519 signature (128).

    Example::

        >>> Anchor.parse("14:" + "ab" * 32).seq
        14
    """

    seq: int
    hash: str
    seal: str | None = None

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """Read ``SEQ:HASH[:SEAL]`` (hex in either case, surrounding spaces ignored)."""
        found = _ANCHOR.fullmatch(text.strip().lower())
        if found is None:
            raise AnchorFormatError(text)
        return cls(int(found["seq"]), found["hash"], found["seal"])

    @property
    def seal_kind(self) -> str | None:
        """``"mac"``, ``"signature"`` or None."""
        if self.seal is None:
            return None
        return "mac" if len(self.seal) == 64 else "signature"

    def text(self) -> str:
        """``SEQ:HASH`` or ``SEQ:HASH:SEAL``, as ``log --head`` prints it."""
        return f"{self.seq}:{self.hash}" + (f":{self.seal}" if self.seal else "")


@dataclass(frozen=True, slots=True)
class AnchorKeys:
    """What checks or makes a seal: an HMAC ``key`` and/or Ed25519 PEM file paths.

    Example::

        keys = AnchorKeys(mac_key=load_chain_key("chain.key"))
    """

    mac_key: bytes | None = None
    sign_key: str | os.PathLike[str] | None = None
    verify_key: str | os.PathLike[str] | None = None


async def head_anchor(store: EventStore, run_id: str, *, keys: AnchorKeys | None = None
                      ) -> Anchor:
    """The anchor of ``run_id``'s last event, sealed with ``keys`` when given.

    Made from the log as it stands: anchor a log you trust (verify it first).

    Example::

        anchor = await head_anchor(store, "r1", keys=AnchorKeys(mac_key=key))
        print(anchor.text())     # 14:6f1c...:9a0b...
    """
    seq = await store.last_seq(run_id)
    last = [env async for env in store.read(run_id, after=seq - 1, until=seq)] if seq else []
    if not last:
        raise RunNotFoundError(run_id)
    head = last[-1]
    seal = None
    if keys is not None and keys.sign_key is not None:
        seal = sign_anchor(keys.sign_key, run_id, head.seq, head.hash)
    elif keys is not None and keys.mac_key is not None:
        seal = anchor_mac(keys.mac_key, run_id, head.seq, head.hash)
    return Anchor(head.seq, head.hash, seal)


def _seal_problem(run_id: str, anchor: Anchor, keys: AnchorKeys) -> str | None:
    kind = anchor.seal_kind
    expected = "signature" if keys.verify_key is not None else (
        "mac" if keys.mac_key is not None else None)
    if kind is None and expected is None:
        return None
    if expected is None:
        return (f"the anchor carries a {'MAC' if kind == 'mac' else 'signature'} but no key "
                "was given to check it (--key-file, or --verify-key for a signature)")
    if kind is None:
        return ("a key was given but the anchor carries no seal: a sealed anchor is printed "
                "by `ledgerflow log RUN --head` with the same key")
    if kind != expected:
        return (f"the anchor carries a {'MAC' if kind == 'mac' else 'signature'} but the key "
                f"given checks a {'MAC' if expected == 'mac' else 'signature'}")
    assert anchor.seal is not None
    if keys.verify_key is not None:
        ok = signature_matches(keys.verify_key, run_id, anchor.seq, anchor.hash, anchor.seal)
    else:
        assert keys.mac_key is not None
        ok = mac_matches(keys.mac_key, run_id, anchor.seq, anchor.hash, anchor.seal)
    if not ok:
        return (f"its {'MAC' if kind == 'mac' else 'signature'} does not match under the "
                "key given: the anchor was not made with this key for this run, or it was "
                "edited")
    return None


def anchor_problem(run_id: str, envelopes: Sequence[Envelope], anchor: Anchor,
                   keys: AnchorKeys | None = None) -> tuple[int | None, str] | None:
    """Why ``envelopes`` (the whole run) do not hold ``anchor``: ``(seq, sentence)``, or None.

    The seal is checked first (with ``keys``), then that the event at the
    anchor's seq exists with exactly its hash, then the chain up to it.

    Example::

        problem = anchor_problem("r1", await store.read_all("r1"), Anchor.parse(kept))
        assert problem is None
    """
    lead = f"the log does not hold the anchored head {anchor.seq}:{anchor.hash[:12]}…"
    sealed = _seal_problem(run_id, anchor, keys or AnchorKeys())
    if sealed is not None:
        return None, f"the anchor cannot be trusted: {sealed}."
    last = envelopes[-1].seq if envelopes else 0
    if len(envelopes) < anchor.seq or envelopes[anchor.seq - 1].seq != anchor.seq:
        at = next((e for e in envelopes if e.seq == anchor.seq), None)
        if at is None:
            return anchor.seq, (f"{lead}: it holds no event seq {anchor.seq} (it ends at seq "
                                f"{last}), so it was truncated below the anchored head.")
        stored = at.hash
    else:
        stored = envelopes[anchor.seq - 1].hash
    if stored != anchor.hash:
        return anchor.seq, (f"{lead}: the hash at seq {anchor.seq} is {stored[:12]}…, so the "
                            f"history up to seq {anchor.seq} was rewritten after the anchor "
                            "was taken.")
    broken = check_chain(run_id, envelopes[:anchor.seq])
    if broken is not None:
        return broken.seq, (f"{lead}: its hash is at seq {anchor.seq}, but the chain below it "
                            f"breaks ({broken.message.rstrip('.')}).")
    return None


def keys_from_files(key_file: str | None = None, *, sign_key: str | None = None,
                    verify_key: str | None = None) -> AnchorKeys | None:
    """The keys the CLI options name: ``--key-file`` (or ``$LEDGERFLOW_CHAIN_KEY_FILE``),
    ``--sign-key``, ``--verify-key``; None when none is given.

    Example::

        keys = keys_from_files("chain.key")
    """
    path = chain_key_path(key_file)
    mac_key = load_chain_key(path) if path else None
    if mac_key is None and sign_key is None and verify_key is None:
        return None
    return AnchorKeys(mac_key=mac_key, sign_key=sign_key, verify_key=verify_key)
