"""Counter-based seeds: a random stream that depends only on a seed and names, never on the order of draws."""

from __future__ import annotations

import hashlib


def stable_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed from (seed, keys), the same in every process and on every machine (unlike `hash()`)."""
    text = ":".join(str(key) for key in (seed, *keys)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") & (2**63 - 1)
