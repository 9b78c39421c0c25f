"""Pairs of perceptual hashes a few bits apart, found without comparing every pair.

Pigeonhole: cut the hash's bits into ``max_bits + 1`` bands; two hashes that differ in at most
``max_bits`` bits agree on at least one band entirely. So, band by band, only hashes with equal band
values are compared (a sort and a binary search), and each such pair's distance is counted. A band
takes every ``max_bits + 1``-th bit: the lowest frequencies, which most head slices share, are
spread over all bands instead of making one band equal for many pairs (on the phantom set, bands of
whole bytes let five times as many pairs through).
"""

from __future__ import annotations

import numpy as np

# Bits set in each byte value.
POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint16)
# Candidate pairs whose distance is counted at once: bounds the memory a band takes (~64 MB).
CHUNK_PAIRS = 1_000_000


def hash_bytes(hashes: list[str]) -> np.ndarray:
    """The hex hashes (all of one length) as rows of bytes, shape (len(hashes), bytes per hash)."""
    return np.frombuffer(bytes.fromhex("".join(hashes)), dtype=np.uint8).reshape(len(hashes), -1)


def close_pairs(ours: np.ndarray, theirs: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """Every ``(i, j, distance)`` whose rows ``ours[i]`` and ``theirs[j]`` (see :func:`hash_bytes`)
    differ in at most ``max_bits`` bits, sorted."""
    if not len(ours) or not len(theirs):
        return []
    # One row per bit position: a band's bits are then whole rows.
    our_bits, their_bits = (np.unpackbits(np.ascontiguousarray(side.T), axis=0) for side in (ours, theirs))
    bands = max_bits + 1
    found: set[tuple[int, int, int]] = set()
    for band in range(bands):
        mine, other = _band_values(our_bits[band::bands]), _band_values(their_bits[band::bands])
        meets = np.flatnonzero(np.isin(mine, other))  # usually few: search only those
        order = np.argsort(other, kind="stable")
        start = np.searchsorted(other[order], mine[meets], "left")
        counts = np.searchsorted(other[order], mine[meets], "right") - start
        # Row meets[k] of ours meets the rows order[start[k] : start[k] + counts[k]] of theirs.
        i = np.repeat(meets, counts)
        j = order[np.arange(counts.sum()) + np.repeat(start - (np.cumsum(counts) - counts), counts)]
        for first in range(0, len(i), CHUNK_PAIRS):
            a, b = i[first : first + CHUNK_PAIRS], j[first : first + CHUNK_PAIRS]
            distance = POPCOUNT[ours[a] ^ theirs[b]].sum(axis=1)
            close = distance <= max_bits
            found.update(zip(a[close].tolist(), b[close].tolist(), distance[close].tolist(), strict=True))
    return sorted(found)


def _band_values(rows: np.ndarray) -> np.ndarray:
    """A band (one row per bit) as one uint64 per hash that sorts and compares fast: all of it up to
    64 bits; of a wider band (``max_bits`` < 3), its last 64. Those meet more often, and their
    distance rules the extra pairs out."""
    value = np.zeros(rows.shape[1], dtype=np.uint64)
    for row in rows:
        value = (value << np.uint64(1)) | row
    return value
