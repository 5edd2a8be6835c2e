"""Test snapshots written from scratch: sklearn digits as PNG class folders, tiny CIFAR-10 batches."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_digits(root: Path, *, per_class: int | None = None, val_every: int = 5) -> Path:
    """digits 8×8 grayscale → root/train/<digit>/*.png and root/val/<digit>/*.png (every 5th image to val)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(d.images, d.target, strict=True)):
        label = int(label)
        counts[label] = counts.get(label, 0) + 1
        if per_class is not None and counts[label] > per_class:
            continue
        split = "val" if i % val_every == 0 else "train"
        folder = root / split / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (img * (255.0 / 16.0)).round().astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i:04d}.png")
    (root / "manifest.json").write_text("{}\n")  # present in real snapshots; must be ignored
    return root


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
        return {b"batch_label": b"synthetic", b"labels": labels, b"data": data.reshape(n, 3072),
                b"filenames": [f"{k}.png".encode() for k in range(n)]}

    for i in range(1, n_batches + 1):
        with open(base / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch), f, protocol=2)
    with open(base / "test_batch", "wb") as f:
        pickle.dump(batch(per_batch), f, protocol=2)
    return root
