"""The Merkle-sum tree of a book: leaves, batches, aggregates, and the values each proof takes.

Shape of the tree (all hashes are circomlib's Poseidon over the BN254 scalar field)::

    leaf      = H(salt, id + present * 2^32, packed amounts, packed notionals)
    batch     = 4-ary Merkle root over N leaves (N = 4^L), proven with the batch's sums
    node      = commitment H(salt, root, sums): a batch's, or an aggregate's whose root is
                H(children's commitments) and whose sums are the children's sums added
    top       = the one aggregate at the last level; its opening (salt, root, sums) is published

Sums are carried up inside the proofs rather than in the node hashes, so an account's inclusion
path (sibling leaf hashes within its batch, each salted) reveals no other account's amounts;
Summa's first version, which hashed sums into every node, showed each sibling's balance.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np

from attest.book import Book
from attest.toolchain import AMOUNT_BITS, ID_BITS, poseidon

FIELD = 21888242871839275222246405745257275088548364400416821818158979397917002775617
"""The BN254 scalar field, in which circom's signals and Poseidon live."""
SUM_NAMES = (
    "accounts",
    "collateral",
    "deficit",
    "maintenance",
    "initial",
    "below_maintenance",
    "below_notional",
    "below_gap",
)
"""The sums of every node, in circuit order, followed by one notional sum per market."""
TREE_ARITY = 4


def salt() -> int:
    """Return a uniformly random field element from the operating system's CSPRNG."""
    return secrets.randbelow(FIELD)


def sum_names(markets: tuple[str, ...]) -> tuple[str, ...]:
    return SUM_NAMES + tuple(f"notional_{m}" for m in markets)


@dataclass(frozen=True)
class Batch:
    """One batch: the rows of the book it holds (a slice of the sorted book)."""

    index: int
    start: int
    stop: int
    size: int
    """Leaves of the circuit (N); rows beyond stop - start are padding."""


def batches(book: Book, size: int) -> list[Batch]:
    """Split the sorted book into batches of ``size`` leaves, the last one padded."""
    n = len(book)
    return [Batch(i, s, min(s + size, n), size) for i, s in enumerate(range(0, n, size))]


def batch_sums(book: Book, b: Batch) -> list[int]:
    """Return the sums a batch proof commits to (Python integers: no overflow)."""
    rows = slice(b.start, b.stop)
    c = book.collateral[rows].astype(object)
    d = book.deficit[rows].astype(object)
    mm = book.maintenance[rows].astype(object)
    below = (c < mm) | (d > 0)
    gross = book.notional[rows].astype(object).sum(axis=1)
    sums = [
        b.stop - b.start,
        int(c.sum()),
        int(d.sum()),
        int(mm.sum()),
        int(book.initial[rows].astype(object).sum()),
        int(below.sum()),
        int(gross[below].sum()),
        int((mm - c + d)[below].sum()),
    ]
    sums += [int(x) for x in book.notional[rows].astype(object).sum(axis=0)]
    return sums


def batch_input(book: Book, b: Batch, salts: list[int], batch_salt: int) -> dict[str, object]:
    """Return the circuit input of a batch (decimal strings, as snarkjs reads them)."""
    pad = b.size - (b.stop - b.start)
    rows = slice(b.start, b.stop)
    m = len(book.markets)

    def col(values: np.ndarray) -> list[str]:
        return [str(int(x)) for x in values[rows]] + ["0"] * pad

    return {
        "salt": [str(s) for s in salts] + ["0"] * pad,
        "id": col(book.ids),
        "present": ["1"] * (b.stop - b.start) + ["0"] * pad,
        "collateral": col(book.collateral),
        "deficit": col(book.deficit),
        "maintenance": col(book.maintenance),
        "initial": col(book.initial),
        "notional": [[str(int(x)) for x in row] for row in book.notional[rows]] + [["0"] * m] * pad,
        "batchSalt": str(batch_salt),
    }


def leaf_preimage(
    salt_: int, account: int, present: int, amounts: list[int], notional: list[int]
) -> list[int]:
    """Return the inputs of a leaf's hash, packed as the circuit packs them."""
    packed = sum(a << (r * AMOUNT_BITS) for r, a in enumerate(amounts))
    groups = [notional[j : j + 4] for j in range(0, len(notional), 4)]
    return [
        salt_,
        account + (present << ID_BITS),
        packed,
        *(sum(x << (r * AMOUNT_BITS) for r, x in enumerate(g)) for g in groups),
    ]


def opening_preimage(opening: dict) -> list[int]:
    """Return the leaf-hash inputs of an account's opening."""
    v = opening["values"]
    amounts = [v["collateral"], v["deficit"], v["maintenance"], v["initial"]]
    return leaf_preimage(int(opening["salt"]), v["account"], 1, amounts, v["notional"])


def merkle_forest(trees: list[list[int]]) -> list[list[list[int]]]:
    """Return the layers of each 4-ary Merkle tree, hashing one level of all trees per call."""
    layers = [[list(t)] for t in trees]
    while len(layers[0][-1]) > 1:
        groups = [
            layer[-1][i : i + TREE_ARITY]
            for layer in layers
            for i in range(0, len(layer[-1]), TREE_ARITY)
        ]
        hashed = iter(poseidon(groups))
        for layer in layers:
            layer.append([next(hashed) for _ in range(len(layer[-1]) // TREE_ARITY)])
    return layers


def path(layers: list[list[int]], leaf: int) -> list[list[str]]:
    """Return the siblings of ``leaf`` at each level, bottom up (three per level)."""
    siblings = []
    index = leaf
    for layer in layers[:-1]:
        first = index - index % TREE_ARITY
        siblings.append([str(layer[j]) for j in range(first, first + TREE_ARITY) if j != index])
        index //= TREE_ARITY
    return siblings


def aggregate_groups(count: int, arity: int) -> list[range]:
    """Return the children of each aggregate node over ``count`` nodes of the level below."""
    return [range(s, min(s + arity, count)) for s in range(0, count, arity)]


def aggregate_input(
    children: list[tuple[int, int, int, list[int]]], salt_: int, sums_len: int, arity: int
) -> dict[str, object]:
    """Return the circuit input of an aggregate over ``children`` given as (commitment, salt,
    root, sums), padded to the aggregate's arity with unused slots."""
    pad = arity - len(children)
    zero = ["0"] * sums_len
    return {
        "child": [str(c[0]) for c in children] + ["0"] * pad,
        "used": ["1"] * len(children) + ["0"] * pad,
        "childSalt": [str(c[1]) for c in children] + ["0"] * pad,
        "childRoot": [str(c[2]) for c in children] + ["0"] * pad,
        "childSums": [[str(s) for s in c[3]] for c in children] + [zero] * pad,
        "salt": str(salt_),
    }


def add_sums(parts: list[list[int]]) -> list[int]:
    return [sum(col) for col in zip(*parts, strict=True)]
