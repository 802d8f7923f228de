"""Near-duplicate search on 64-bit perceptual hashes without comparing every pair.

Multi-index hashing (Norouzi et al., CVPR 2012): split each hash into ``t + 1`` disjoint chunks. Two hashes within
Hamming distance ``t`` differ in at most ``t`` bits, so by the pigeonhole principle at least one chunk is equal.
Bucketing by each chunk value and comparing only within buckets finds *every* pair within distance ``t`` (no
misses) while the number of comparisons is about ``(t + 1) * N**2 / 2**(64 / (t + 1))`` instead of ``N**2 / 2``:
for a million hashes and ``t = 4``, a few hundred million XOR-popcounts, done in vectorised blocks.
"""

from __future__ import annotations

import numpy as np

#: Largest block of comparisons (rows x columns) held in memory at once.
_BLOCK = 1 << 22


def popcount64(x: np.ndarray) -> np.ndarray:
    """Number of set bits of each uint64, as uint8 (numpy >= 2 has it built in; older numpy unpacks bytes)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x).astype(np.uint8)
    bits = np.unpackbits(x.view(np.uint8).reshape(*x.shape, 8), axis=-1)
    return bits.sum(axis=-1, dtype=np.uint8)


def chunk_layout(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of the ``max_distance + 1`` chunks covering 64 bits, widths differing by at most one."""
    if not 0 <= max_distance <= 31:
        raise ValueError(f"max_distance must be between 0 and 31, got {max_distance}")
    n = max_distance + 1
    widths = [64 // n + (1 if i < 64 % n else 0) for i in range(n)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def near_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with ``popcount(h_i ^ h_j) <= max_distance``.

    Args:
        hashes: (N,) uint64.
        max_distance: Hamming radius in bits, 0..31.

    Returns:
        pairs (P, 2) int64 sorted and unique, and their distances (P,) uint8.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    found: list[np.ndarray] = []
    for shift, width in chunk_layout(max_distance):
        keys = (h >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
            found.append(_within(order[s:e], h, max_distance))
    if not found:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.uint8)
    pairs = np.unique(np.concatenate(found), axis=0)
    if len(pairs) == 0:
        return pairs.reshape(0, 2), np.empty(0, dtype=np.uint8)
    return pairs, popcount64(h[pairs[:, 0]] ^ h[pairs[:, 1]])


def _within(members: np.ndarray, h: np.ndarray, t: int) -> np.ndarray:
    """Pairs (i < j) of one bucket within distance t, compared block by block to bound memory."""
    members = np.sort(members)
    m = len(members)
    block = max(1, _BLOCK // m)
    hm = h[members]
    out = []
    for a in range(0, m, block):
        d = popcount64(hm[a : a + block, None] ^ hm[None, :])
        rows, cols = np.nonzero(d <= t)
        rows = rows + a
        keep = cols > rows
        if keep.any():
            out.append(np.stack([members[rows[keep]], members[cols[keep]]], axis=1))
    return np.concatenate(out).astype(np.int64) if out else np.empty((0, 2), dtype=np.int64)
