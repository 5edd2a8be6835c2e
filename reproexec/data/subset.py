"""A smoke run's dataset: a small derived snapshot with the same layout as the verified one.

A bring-your-own script reads its data its own way, so a smoke run of it cannot ask the trainer for
a subset: it gets a snapshot of its own instead. Under each top-level folder (a split: train/,
val/), at most `per_split` files, picked round-robin over its class folders in name order, so every
class is there; files at the top level are kept. The copy gets its own manifest (and id), and is
cached by the source's manifest id and the size, so a second smoke run of the same data reuses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from pathlib import Path

from reproexec.data.manifest import MANIFEST_NAME, DatasetManifest, snapshot


def smoke_subset(root: Path, manifest: DatasetManifest, per_split: int, cache: Path) -> Path:
    """The derived snapshot's folder (made once, under `cache`)."""
    dest = cache / f"{manifest.manifest_id[:16]}-{per_split}"
    if (dest / MANIFEST_NAME).is_file():
        return dest
    chosen = pick(sorted(f.relpath for f in manifest.files), per_split)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".subset-"))
    try:
        for rel in chosen:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(root / rel, target, follow_symlinks=False)
        for folder, _dirs, files in os.walk(tmp):  # readable by the run's unprivileged user, whatever the umask
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        snapshot(tmp)
        try:
            os.rename(tmp, dest)
        except OSError:  # made meanwhile by another smoke run: use that one
            if not (dest / MANIFEST_NAME).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def pick(relpaths: list[str], per_split: int) -> list[str]:
    """Which files a subset keeps (see the module docstring); relpaths sorted."""
    kept: list[str] = []
    splits: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rel in relpaths:
        parts = rel.split("/")
        if len(parts) == 1:
            kept.append(rel)
        else:
            splits[parts[0]][parts[1] if len(parts) > 2 else ""].append(rel)
    for classes in splits.values():
        queues = [list(files) for _, files in sorted(classes.items())]
        taken = 0
        while taken < per_split and any(queues):
            for queue in queues:
                if queue and taken < per_split:
                    kept.append(queue.pop(0))
                    taken += 1
    return sorted(kept)
