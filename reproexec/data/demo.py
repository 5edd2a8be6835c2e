"""The demo dataset: scikit-learn's bundled handwritten digits as a PNG image-folder snapshot.

``load_digits`` holds 1,797 real 8×8 grey images (values 0..16), shipped inside scikit-learn, so
nothing is downloaded. They are written as ``OUT/{train,val}/<digit>/<index>.png`` (index = the
image's position in ``load_digits``, zero-padded to five digits) and snapshotted.

**Byte-identical on every machine.** The PNGs are encoded here, not by Pillow: Pillow's wheels
bundle different zlib builds across versions (zlib, then zlib-ng), and compressed bytes differ
between them, which would change the manifest id of the "same" demo on another machine. The
encoder below writes 8-bit greyscale with filter 0 and *stored* (uncompressed) deflate blocks:
the bytes follow from the pixels alone, with no timestamp, text chunk or library version in them.
Any PNG reader (Pillow, torchvision) opens them.

**Split.** Seeded and stratified: per digit, the images are ordered by ``random.Random(seed).random()``
keys (``random()`` is the one stream Python promises never to change) and the first
``max(1, round(n * val_fraction))`` go to val.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

from reproexec.data.manifest import SnapshotResult, snapshot
from reproexec.errors import DataError

CLASSES = tuple(str(d) for d in range(10))


def write_digits_demo(
    out: str | os.PathLike[str], val_fraction: float = 0.2, seed: int = 0, force: bool = False
) -> SnapshotResult:
    """Write the digits image folder to `out` and snapshot it. Refuses a non-empty `out` unless
    `force`, and even then replaces only a previous snapshot (a folder holding manifest.json)."""
    out = Path(out)
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-fraction {val_fraction} is out of range", "pass a fraction between 0 and 1, e.g. 0.2")
    if seed < 0:
        raise DataError(f"--seed {seed} is negative", "pass a seed of 0 or more")
    _check_target(out, force)
    images, labels = _load_digits()
    val = _stratified_val(labels, val_fraction, seed)

    # Build next to OUT, then rename into place: a crash never leaves half a dataset at OUT.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for split in ("train", "val"):
            for c in CLASSES:
                (tmp / split / c).mkdir(parents=True)
        for i, (img, label) in enumerate(zip(images, labels)):
            split = "val" if i in val else "train"
            (tmp / split / str(label) / f"{i:05d}.png").write_bytes(encode_png_gray(img))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"cannot write the demo dataset to {out}: {e.strerror or e}", "pick a writable folder"
        ) from None
    return snapshot(out)


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder", "pass a new folder name")
    if not any(out.iterdir()):
        out.rmdir()  # an empty folder is as good as none; it is recreated by the rename
        return
    if not force:
        raise DataError(
            f"{out} is not empty; refusing to write the demo dataset into it",
            "pass an empty or new folder, or --force to replace a previous demo snapshot",
        )
    if not (out / "manifest.json").is_file():
        raise DataError(
            f"{out} is not empty and holds no manifest.json; --force only replaces a previous snapshot",
            "pass an empty or new folder",
        )


def _load_digits() -> tuple[list[bytes], list[int]]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the demo dataset needs scikit-learn, which is not installed", "pip install 'reproexec[demo]'"
        ) from None
    import numpy as np

    d = load_digits()
    # 0..16 → 0..255, rounded half to even by numpy: the same on every platform.
    pixels = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return [p.tobytes() for p in pixels], [int(t) for t in d.target]


def _stratified_val(labels: list[int], val_fraction: float, seed: int) -> set[int]:
    import random

    rng = random.Random(seed)
    keys = [rng.random() for _ in labels]  # one key per image, in dataset order
    val: set[int] = set()
    for c in sorted(set(labels)):
        idx = sorted((i for i, y in enumerate(labels) if y == c), key=lambda i: (keys[i], i))
        n_val = min(len(idx) - 1, max(1, round(len(idx) * val_fraction)))
        val.update(idx[:n_val])
    return val


def encode_png_gray(pixels: bytes, width: int = 8, height: int = 8) -> bytes:
    """An 8-bit greyscale PNG whose bytes depend on the pixels only (stored deflate, no metadata)."""
    if len(pixels) != width * height:
        raise ValueError(f"expected {width * height} pixels, got {len(pixels)}")
    raw = b"".join(b"\x00" + pixels[r * width : (r + 1) * width] for r in range(height))  # filter 0 per row
    # zlib stream: header 0x78 0x01, stored blocks of ≤ 65,535 bytes, adler32 of the raw data.
    blocks = []
    for start in range(0, max(len(raw), 1), 65535):
        chunk = raw[start : start + 65535]
        final = 1 if start + 65535 >= len(raw) else 0
        blocks.append(struct.pack("<BHH", final, len(chunk), len(chunk) ^ 0xFFFF) + chunk)
    idat = b"\x78\x01" + b"".join(blocks) + struct.pack(">I", zlib.adler32(raw))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
