"""Test snapshots written from scratch: tiny CIFAR-10 batches (digits come from reproexec.data.demo)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_cifar(root: Path, *, per_batch: int = 20, n_batches: int = 5, seed: int = 0) -> Path:
    """A tiny, learnable CIFAR-10 python-batches set (class = dominant colour channel pattern)."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    names = [f"class{i}".encode() for i in range(10)]
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": per_batch}, f, protocol=2)

    def batch(n: int) -> dict:
        labels = [int(v) for v in rng.integers(0, 10, n)]
        data = rng.integers(0, 60, (n, 3, 32, 32), dtype=np.uint8)
        for k, lab in enumerate(labels):
            data[k, lab % 3] += np.uint8(20 * (lab // 3 + 1))
        return {
            b"batch_label": b"synthetic",
            b"labels": labels,
            b"data": data.reshape(n, 3072),
            b"filenames": [f"{k}.png".encode() for k in range(n)],
        }

    for i in range(1, n_batches + 1):
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch), f, protocol=2)
    with open(base / "test_batch", "wb") as f:
        pickle.dump(batch(per_batch), f, protocol=2)
    return root
