"""Deterministic random streams.

Every random draw derives from (project seed, round, shard, sample index, purpose),
so materialising a partition twice gives the same labels, and a sample's draws do
not depend on how many samples come before it or how work is batched.
"""

from __future__ import annotations

import hashlib

import numpy as np

_SEED_BITS = 63  # fits a signed int64 parquet column and torch.Generator.manual_seed


def derive_seed(project_seed: int, *parts: object) -> int:
    """A 63-bit seed from the project seed and any labelled parts (round, shard, index, purpose)."""
    text = "\x1f".join([str(int(project_seed)), *(str(p) for p in parts)])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << _SEED_BITS) - 1)


def rng_for(project_seed: int, *parts: object) -> np.random.Generator:
    """A numpy Generator seeded by `derive_seed` on the same parts."""
    return np.random.Generator(np.random.PCG64(derive_seed(project_seed, *parts)))
