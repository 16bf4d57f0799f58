"""Checking an attestation, and one account's inclusion in it.

What :func:`verify` checks, in order, stopping at the first failure with a one-line reason:

1. the manifest is an attestation of this format, with the files it names;
2. every proof verifies against its circuit's verification key (snarkjs, Groth16);
3. the tree is consistent: each aggregate's children are, in order, the commitments of the
   level below it (unused slots zero), and one node is left at the top;
4. batches are ordered by account id (first <= last < next batch's first), so no account is
   counted twice;
5. the published top opening hashes to the top commitment (the root), its root is the hash of
   the top's children, and the published totals and health statement are that opening's.

What a verifier learns: the totals and the health statement, the number of batches and each
batch's first and last account id. What it does not learn: any account's amounts, or any
batch's or aggregate's sums below the top (each is hidden by a random salt in its commitment).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attest import toolchain
from attest.build import FORMAT, health
from attest.tree import TREE_ARITY, opening_preimage, sum_names
from engine.errors import PredliqError


class VerifyError(PredliqError, ValueError):
    """An attestation or opening that does not check; the message is the one-line reason."""


@dataclass(frozen=True)
class Verified:
    """A checked attestation: its manifest and the public signals of every proof by level."""

    manifest: dict[str, Any]
    signals: list[list[list[int]]]
    climbs: list[int]
    """Roots reached by the inclusion paths asked for (see :func:`verify_account`)."""


def _load(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VerifyError(f"{what} {str(path)!r} is missing") from None
    except (OSError, ValueError) as exc:
        raise VerifyError(f"{what} {str(path)!r} is not readable JSON ({exc})") from None


def _signals(path: Path, count: int) -> list[int]:
    """Return a proof's public signals as integers (``count`` of them)."""
    try:
        values = [int(x) for x in _load(path, "proof")["publicSignals"]]
    except (KeyError, TypeError, ValueError):
        raise VerifyError(f"proof {path.name} has malformed public signals") from None
    if len(values) != count:
        raise VerifyError(f"proof {path.name} has {len(values)} public signals, not {count}")
    return values


def verify(folder: Path, climb: dict[str, Any] | None = None) -> Verified:
    """Check the attestation in ``folder``; raise VerifyError with the reason if it fails.

    ``climb`` (leaf preimage, leaf index, path) is an inclusion path to hash in the same Node
    process; the root it reaches is returned in ``Verified.climbs``."""
    manifest = _load(folder / "attestation.json", "attestation manifest")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VerifyError(f"{str(folder)!r} is not a {FORMAT} attestation")
    try:
        markets = tuple(manifest["markets"])
        levels = manifest["levels"]
        names = sum_names(markets)
        circuits = manifest["circuits"]
        top = manifest["top"]
        root = int(manifest["root"])
        arity = int(manifest["arity"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyError(f"attestation manifest lacks or garbles {exc}") from None
    # 2. Every proof.
    items = []
    for depth, level in enumerate(levels):
        kind = "batch" if depth == 0 else "aggregate"
        vkey = folder / circuits[kind]["verification_key"]
        if not vkey.is_file():
            raise VerifyError(f"verification key {vkey.name} is missing")
        if toolchain.fingerprint(vkey) != circuits[kind]["verification_key_sha256"]:
            raise VerifyError(
                f"verification key {vkey.name} differs from the one the manifest names"
            )
        for name in level:
            proof = folder / "proofs" / name
            if not proof.is_file():
                raise VerifyError(f"proof {name} is missing")
            items.append({"vkey": str(vkey), "proof": str(proof)})
    if len(levels) < 2 or len(levels[-1]) != 1:
        raise VerifyError("the tree does not end in one aggregate node")
    signals = [
        [_signals(folder / "proofs" / name, 4 if depth == 0 else 1 + arity) for name in level]
        for depth, level in enumerate(levels)
    ]
    # The hashes the last check needs go to Node with the proofs: one process in all.
    try:
        top_salt, top_root = int(top["salt"]), int(top["root"])
        top_sums = [int(x) for x in top["sums"]]
    except (KeyError, TypeError, ValueError):
        raise VerifyError("the top opening is malformed") from None
    hashes = [[top_salt, top_root, *top_sums], signals[-1][0][1:]]
    request = {"items": items, "hashes": [[str(x) for x in h] for h in hashes]}
    if climb is not None:
        request["climbs"] = [climb]
    reply = toolchain.node_call("verify", request, "verification")
    for item, proof_reply in zip(items, reply["proofs"], strict=True):
        if not proof_reply["ok"]:
            raise VerifyError(f"proof {Path(item['proof']).name}: {proof_reply['reason']}")
    # 3. The tree.
    for depth in range(1, len(levels)):
        below = [s[0] if depth > 1 else s[1] for s in signals[depth - 1]]
        expected = [below[i : i + arity] for i in range(0, len(below), arity)]
        if len(expected) != len(signals[depth]):
            raise VerifyError(
                f"level {depth} has {len(signals[depth])} nodes for {len(below)} children "
                f"(expected {len(expected)})"
            )
        for j, (want, sig) in enumerate(zip(expected, signals[depth], strict=True)):
            got = sig[1:]
            padded = want + [0] * (arity - len(want))
            if got != padded:
                raise VerifyError(
                    f"aggregate {levels[depth][j]} does not commit to the nodes below it in order"
                )
    # 4. Account ids across batches.
    previous = -1
    for name, sig in zip(levels[0], signals[0], strict=True):
        first, last = sig[2], sig[3]
        if not previous < first <= last:
            raise VerifyError(
                f"batch {name} holds accounts {first}..{last} after account {previous}: "
                "an account would be counted twice"
            )
        previous = last
    # 5. The published top and totals.
    if len(top_sums) != len(names):
        raise VerifyError(f"the top opening holds {len(top_sums)} sums, not {len(names)}")
    top_commitment = signals[-1][0][0]
    if root != top_commitment:
        raise VerifyError("the published root is not the top aggregate's commitment")
    opened, children_root = (int(x) for x in reply["hashes"])
    if opened != top_commitment:
        raise VerifyError("the published totals do not open the root")
    if children_root != top_root:
        raise VerifyError("the top opening's root is not the hash of the top's children")
    totals = dict(zip(names, top_sums, strict=True))
    published = manifest.get("totals", {})
    for name, value in totals.items():
        if str(published.get(name)) != str(value):
            raise VerifyError(
                f"published total {name} is {published.get(name)}, the proofs say {value}"
            )
    if manifest.get("health") != health(totals):
        raise VerifyError("the published health statement does not follow from the totals")
    return Verified(manifest, signals, [int(x) for x in reply.get("climbs", [])])


def verdict(v: Verified) -> str:
    """Return the one verdict line of a verified attestation."""
    m = v.manifest
    h = m["health"]
    t = m["totals"]
    units = 1_000_000
    state = (
        "collateral covers maintenance"
        if h["collateral_covers_maintenance"]
        else f"SHORTFALL {int(h['shortfall']) / units:,.2f} against maintenance"
    )
    return (
        f"verified: {int(t['accounts']):,} accounts, {sum(len(lv) for lv in m['levels'])} proofs; "
        f"{state}; {int(t['below_maintenance']):,} accounts below maintenance holding "
        f"{int(t['below_notional']) / units:,.2f} notional; "
        f"bad debt {int(t['deficit']) / units:,.2f}"
    )


def verify_account(folder: Path, account: int, opening_file: Path) -> str:
    """Check the attestation and that ``account`` is in it with the values of its opening;
    return the verdict line."""
    opening = _load(opening_file, "opening")
    try:
        values = opening["values"]
        batch = int(opening["batch"])
        leaf = int(opening["leaf"])
        siblings = opening["path"]
        held = int(values["account"])
        preimage = opening_preimage(opening)
        if not isinstance(siblings, list) or any(
            not isinstance(level, list) or len(level) != TREE_ARITY - 1 for level in siblings
        ):
            raise ValueError("each level of the path holds three siblings")
        path = [[str(int(x)) for x in level] for level in siblings]
    except (KeyError, TypeError, ValueError) as exc:
        raise VerifyError(f"opening {str(opening_file)!r} is malformed ({exc})") from None
    if opening.get("format") != FORMAT:
        raise VerifyError(f"opening {str(opening_file)!r} is not a {FORMAT} opening")
    if held != account:
        raise VerifyError(f"opening {str(opening_file)!r} is of account {held}, not {account}")
    climb = {"leaf": [str(x) for x in preimage], "index": leaf, "path": path}
    v = verify(folder, climb)
    if len(values["notional"]) != len(v.manifest["markets"]):
        raise VerifyError(
            f"opening {str(opening_file)!r} holds {len(values['notional'])} notionals; the "
            f"attestation has {len(v.manifest['markets'])} markets"
        )
    batches = v.signals[0]
    if not 0 <= batch < len(batches):
        raise VerifyError(f"opening names batch {batch}; the attestation has {len(batches)}")
    first, last = batches[batch][2], batches[batch][3]
    if not first <= account <= last:
        raise VerifyError(f"account {account} is outside batch {batch} ({first}..{last})")
    if v.climbs[0] != batches[batch][0]:
        raise VerifyError(
            f"account {account} with these values is not in the attestation "
            f"(its path reaches another root than batch {batch}'s)"
        )
    return f"account {account} is included with its values; " + verdict(v)
