"""Damaged copies of a file's bytes, for the fuzz tests of the file readers."""
import numpy as np


def damaged_copies(good, seed, n=200, values=None, step=1):
    """Truncations of ``good`` (every ``step``-th length), then ``n`` seeded copies with one to three bytes
    changed (xor with a random nonzero byte, or set to one of the bytes ``values``): ``(raw, offsets)``
    pairs, the offsets changed (empty for a truncation)."""
    rng = np.random.default_rng(seed)
    copies = [(good[:cut], ()) for cut in range(0, len(good), step)]
    for _ in range(n):
        raw = bytearray(good)
        where = tuple(int(at) for at in rng.integers(0, len(raw), size=int(rng.integers(1, 4))))
        for at in where:
            if values is not None and rng.random() < 0.5:
                raw[at] = values[int(rng.integers(len(values)))]
            else:
                raw[at] ^= int(rng.integers(1, 256))
        copies.append((bytes(raw), where))
    return copies
