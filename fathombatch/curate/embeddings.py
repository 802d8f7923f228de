"""Engine embeddings as 64-bit SimHashes, so near duplicates by content share the pHash machinery.

An engine's penultimate ``features`` (what the kNN out-of-sample score uses) say what is in a frame rather than how
its pixels look: a re-framed or re-exposed shot of the same animal can sit close in feature space while its pHash
differs. Comparing every pair of a million embeddings is out of reach, so each embedding becomes a SimHash (Charikar
2002): centred on the collection's mean (ReLU features all share one orthant, where random hyperplanes through the
origin would barely separate them), then the signs of 64 seeded random projections. The Hamming distance of two
SimHashes estimates the angle between the embeddings (``angle ≈ π · bits / 64``), and
:func:`~fathombatch.curate.hashindex.near_pairs` finds the close pairs through its bucket index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fathombatch.errors import UsageError
from fathombatch.progress import Progress

#: Bits per embedding hash (one uint64).
BITS = 64


def simhash(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) float features -> (N,) uint64 SimHashes, centred on the rows' mean; the same seed, the same planes."""
    x = np.asarray(features, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    planes = np.random.default_rng(seed).standard_normal((x.shape[1], BITS))
    bits = (x @ planes) > 0
    weights = np.left_shift(np.uint64(1), np.arange(BITS, dtype=np.uint64))
    return (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)


def embedding_hashes(
    files: Sequence[Path],
    engine: str | Path,
    *,
    batch_size: int = 32,
    threads: int | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``engine`` over ``files`` and SimHash its features.

    Returns:
        ``(hashes, valid)``: (N,) uint64 and (N,) bool; files that cannot be decoded are not valid (their hash is 0).

    Raises:
        UsageError: the engine has no ``features`` output (engines exported by fathombatch have one).
    """
    from fathombatch.backends import open_engine
    from fathombatch.decode import create_decoder

    eng = open_engine(engine, threads=threads, device=None)
    progress = progress or Progress(enabled=False)
    feats: list[np.ndarray] = []
    rows: list[int] = []
    with create_decoder("pil", eng.manifest.input, batch_size=batch_size, threads=threads) as decoder, \
            progress.task("Embedding", len(files)) as task:
        for start in range(0, len(files), batch_size):
            chunk = list(files[start : start + batch_size])
            decoded = decoder.decode(chunk)
            if decoded.ok:
                out = eng.run(np.asarray(decoded.images))
                if "features" not in out:
                    raise UsageError(f"engine {engine} has no 'features' output, so it gives no embeddings; "
                                     "use an engine exported by fathombatch")
                feats.append(np.asarray(out["features"], dtype=np.float32))
                rows += [start + i for i in decoded.ok]
            task.advance(len(chunk))
    hashes = np.zeros(len(files), dtype=np.uint64)
    valid = np.zeros(len(files), dtype=bool)
    if rows:
        hashes[rows] = simhash(np.concatenate(feats))
        valid[rows] = True
    return hashes, valid
